{{/* Names and labels. */}}
{{- define "tolk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tolk.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tolk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tolk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tolk.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tolk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tolk
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The tolk server pods (not the engine group, not the trial Redis). */}}
{{- define "tolk.serverSelectorLabels" -}}
{{ include "tolk.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "tolk.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tolk.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag@digest of an image block; (list $imageValues $defaultTag). */}}
{{- define "tolk.imageRef" -}}
{{- $img := index . 0 -}}
{{- $tag := default (index . 1) $img.tag -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo -}}{{- end -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $repo $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{- define "tolk.image" -}}
{{- include "tolk.imageRef" (list .Values.image (printf "%s-cuda13" .Chart.AppVersion)) -}}
{{- end -}}

{{/* The stop arithmetic (docs/operations.md, "Stop timeout"): after the drain, queued frames
are flushed (2 s), WebSockets closed (2 s), uvicorn shuts the rest down (5 s) and the engine
tears down (5 s); tests/test_helm_chart.py checks these against the server's constants. */}}
{{- define "tolk.stopTailSeconds" -}}14{{- end -}}

{{- define "tolk.minGraceSeconds" -}}
{{- $d := .Values.drain -}}
{{- add (int $d.preStopSeconds) (int (ceil .Values.server.drainTimeoutSeconds)) (int (include "tolk.stopTailSeconds" .)) (int $d.marginSeconds) -}}
{{- end -}}

{{- define "tolk.graceSeconds" -}}
{{- $min := int (include "tolk.minGraceSeconds" .) -}}
{{- $set := .Values.drain.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- $min -}}
{{- else if lt (int $set) $min -}}
{{- fail (printf "drain.terminationGracePeriodSeconds=%d is shorter than preStop (%d) + drain (%v) + the stop tail (%s) + margin (%d) = %d s: in-flight requests would be killed" (int $set) (int .Values.drain.preStopSeconds) .Values.server.drainTimeoutSeconds (include "tolk.stopTailSeconds" .) (int .Values.drain.marginSeconds) $min) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/* GPUs per tolk pod: gpu.count, else tensor × data parallel size. */}}
{{- define "tolk.gpuCount" -}}
{{- if .Values.gpu.count -}}
{{- int .Values.gpu.count -}}
{{- else -}}
{{- $s := include "tolk.settings" . | fromYaml -}}
{{- mul (int (default 1 $s.tensor_parallel_size)) (int (default 1 $s.data_parallel_size)) -}}
{{- end -}}
{{- end -}}

{{- define "tolk.inProcessEngine" -}}
{{- if eq .Values.topology "all-in-one" -}}true{{- end -}}
{{- end -}}

{{- define "tolk.storeEnabled" -}}
{{- if or .Values.store.url .Values.store.urlSecret.name .Values.store.bundledRedis.enabled -}}true{{- end -}}
{{- end -}}

{{- define "tolk.redisName" -}}
{{- printf "%s-redis-trial" (include "tolk.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tolk.engineName" -}}
{{- printf "%s-engine" (include "tolk.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tolk.authSecretName" -}}
{{- default (printf "%s-auth" (include "tolk.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* API keys are on unless auth.insecureNoAuth: from auth.existingSecret, or a Secret the chart
writes (auth.apiKeys, else a generated key kept across upgrades). */}}
{{- define "tolk.authEnabled" -}}
{{- if not .Values.auth.insecureNoAuth -}}true{{- end -}}
{{- end -}}

{{/* Whether Prometheus scrapes /metrics with a key (the Secret's `scrape-key`). */}}
{{- define "tolk.scrapeWithKey" -}}
{{- $m := .Values.metrics -}}
{{- if and $m.serviceMonitor.enabled (not $m.public) (include "tolk.authEnabled" .) -}}true{{- end -}}
{{- end -}}

{{- define "tolk.modelClaimName" -}}
{{- default (printf "%s-models" (include "tolk.fullname" .)) .Values.model.pvc.claimName -}}
{{- end -}}

{{/* The PromQL selector of this release's tolk targets (ServiceMonitor: job = the Service). */}}
{{- define "tolk.promSelector" -}}
{{- printf "namespace=%q, job=%q" .Release.Namespace (include "tolk.fullname" .) -}}
{{- end -}}

{{/* The default per-pod target of the autoscaling gauge: 75% of the engine's batch. */}}
{{- define "tolk.scaleTarget" -}}
{{- $given := index . 1 -}}
{{- if not (kindIs "invalid" $given) -}}
{{- $given -}}
{{- else -}}
{{- $s := include "tolk.settings" (index . 0) | fromYaml -}}
{{- $batch := mul (int (default 64 $s.max_num_seqs)) (int (default 1 $s.data_parallel_size)) -}}
{{- max 1 (div (mul $batch 3) 4) -}}
{{- end -}}
{{- end -}}
