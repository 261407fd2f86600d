"""strongroom: a Kubernetes-native key vault backed by PKCS#11 HSMs."""

__version__ = "0.1.0"
