{{/*
Names are fixed, not derived from the release: the CSIDriver, the ClusterRoles
and the CA Secret the operator looks up are cluster-wide or well known, so one
release per cluster is what strongroom supports.
*/}}
{{- define "strongroom.operatorName" -}}strongroom-operator{{- end -}}
{{- define "strongroom.csiNodeName" -}}strongroom-csi-node{{- end -}}
{{- define "strongroom.testName" -}}strongroom-test{{- end -}}
{{- define "strongroom.driverName" -}}csi.strongroom.io{{- end -}}
{{/* The Secret `strongroom operator` keeps its CA in (operator/strongroom/reconcile/ca.py). */}}
{{- define "strongroom.caSecret" -}}strongroom-ca{{- end -}}
{{/* The Secret of the operator's client CA (reconcile/ca.py): the pools trust only it. */}}
{{- define "strongroom.clientCaSecret" -}}strongroom-client-ca{{- end -}}
{{/* What each pool's ServiceAccount is bound to (builders/pool.py TOKEN_REVIEWER_ROLE). */}}
{{- define "strongroom.tokenReviewerName" -}}strongroom-token-reviewer{{- end -}}

{{- define "strongroom.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* Labels of every object; the component's selector labels come on top. */}}
{{- define "strongroom.labels" -}}
app.kubernetes.io/name: strongroom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: strongroom
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "strongroom.selectorLabels" -}}
app.kubernetes.io/name: strongroom
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "strongroom.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
A pod's annotations: the Prometheus scrape annotations of its metrics port (when
metrics.enabled), then the pod's own podAnnotations, which may override them.
Call with (dict "root" $ "port" <metrics port> "extra" <podAnnotations>).
*/}}
{{- define "strongroom.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if .root.Values.metrics.enabled -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge (deepCopy (.extra | default dict)) $annotations -}}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Whether to render the Prometheus Operator's monitors (metrics.serviceMonitor.enabled). */}}
{{- define "strongroom.monitors" -}}
{{- $wanted := .Values.metrics.serviceMonitor.enabled -}}
{{- if and .Values.metrics.enabled (or (eq (toString $wanted) "true") (and (kindIs "invalid" $wanted) (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor"))) -}}
true
{{- end -}}
{{- end -}}
