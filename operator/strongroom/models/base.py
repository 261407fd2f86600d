"""Pieces every custom resource shares: the model base, conditions, references, CEL rules."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

GROUP = "strongroom.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Key Vault object names: 1-127 letters, digits and dashes.
KEY_VAULT_NAME_RULE = "self.matches('^[0-9A-Za-z-]+$')"
KEY_VAULT_NAME_MESSAGE = (
    "a name in a vault is 1-127 letters, digits and dashes (no dots or underscores)"
)


def rule(expression: str, message: str, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry, evaluated by the API server."""
    entry = {"rule": expression, "message": message}
    if reason is not None:
        entry["reason"] = reason
    return entry


def rules(*entries: dict[str, str]) -> dict[str, Any]:
    """`json_schema_extra` that attaches CEL rules to a model or a field."""
    return {"x-kubernetes-validations": list(entries)}


def immutable(field: str, hint: str) -> dict[str, str]:
    return rule("self == oldSelf", f"{field} cannot be changed: {hint}", "FieldValueForbidden")


class Model(BaseModel):
    """Base of every spec and status: camelCase on the wire, unknown fields ignored."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON shape Kubernetes stores: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# A Kubernetes resource quantity ("500m", "1Gi", 2), which may be written as a number or a string.
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
            r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        }
    ),
]

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(Model):
    """The state of one aspect of the resource, in the shape every Kubernetes tool reads."""

    type: str = Field(description="What this condition is about; `Ready` sums up the resource.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        "", description="A CamelCase word that says why, for tools to match on (e.g. PoolNotReady)."
    )
    message: str = Field("", description="What happened and what to do about it, for a person.")
    last_transition_time: datetime | None = Field(
        None, description="When the status of this condition last changed."
    )
    observed_generation: int | None = Field(
        None, description="The metadata.generation of the spec this condition describes."
    )


class LocalRef(Model):
    """A reference to another resource of strongroom in the same namespace."""

    name: str = Field(
        description="Name of the resource, in this resource's namespace.",
        min_length=1,
        max_length=63,
    )


class ResourceRequirements(Model):
    """CPU and memory of one container, as in a Pod's `resources`."""

    requests: dict[str, Quantity] | None = Field(
        None, description="Resources the scheduler reserves for the container (cpu, memory)."
    )
    limits: dict[str, Quantity] | None = Field(
        None, description="The most the container may use (cpu, memory)."
    )


def ready_condition(status: "HasConditions") -> Condition | None:
    for condition in status.conditions:
        if condition.type == "Ready":
            return condition
    return None


class HasConditions(Model):
    """Status fields common to every kind."""

    observed_generation: int | None = Field(
        None, description="The metadata.generation that the operator last reconciled."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Conditions of the resource; `Ready` is True when it can be used.",
    )
