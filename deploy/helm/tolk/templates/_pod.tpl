{{/* The tolk server's pod template, shared by the Deployment and the StatefulSet. */}}
{{- define "tolk.podTemplate" -}}
{{- $v := .Values -}}
{{- $gpu := and $v.gpu.enabled (include "tolk.inProcessEngine" .) -}}
metadata:
  labels:
    {{- include "tolk.serverSelectorLabels" . | nindent 4 }}
    {{- with $v.workload.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    kubectl.kubernetes.io/default-container: tolk
    {{- with $v.workload.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "tolk.serviceAccountName" . }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
  # No TOLK_PORT=tcp://… from a Service named "tolk": tolk reads TOLK_* as its settings.
  enableServiceLinks: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ include "tolk.graceSeconds" . }}
  {{- with $v.workload.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with $v.workload.runtimeClassName }}
  runtimeClassName: {{ . }}
  {{- end }}
  {{- $nodeSelector := deepCopy $v.workload.nodeSelector -}}
  {{- if $gpu }}{{ $nodeSelector = mergeOverwrite $nodeSelector (deepCopy $v.gpu.nodeSelector) }}{{ end }}
  {{- with $nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := $v.workload.tolerations -}}
  {{- if $gpu }}{{ $tolerations = concat $tolerations $v.gpu.tolerations }}{{ end }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.workload.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or $v.workload.topologySpread.enabled $v.workload.topologySpread.extra }}
  topologySpreadConstraints:
    {{- if $v.workload.topologySpread.enabled }}
    - maxSkew: {{ $v.workload.topologySpread.maxSkew }}
      topologyKey: {{ $v.workload.topologySpread.topologyKey }}
      whenUnsatisfiable: {{ $v.workload.topologySpread.whenUnsatisfiable }}
      labelSelector:
        matchLabels:
          {{- include "tolk.serverSelectorLabels" . | nindent 10 }}
      {{- if eq $v.workload.kind "Deployment" }}
      matchLabelKeys: [pod-template-hash]   # spread each ReplicaSet's pods by themselves
      {{- end }}
    {{- end }}
    {{- with $v.workload.topologySpread.extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  containers:
    - name: tolk
      image: {{ include "tolk.image" . }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      command:
        {{- toYaml $v.workload.command | nindent 8 }}
      args:
        {{- include "tolk.serveArgs" . | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ $v.server.port }}
          protocol: TCP
      env:
        {{- include "tolk.env" . | nindent 8 }}
      {{- include "tolk.probes" . | nindent 6 }}
      lifecycle:
        preStop:
          {{- if eq $v.drain.preStopMode "exec" }}
          exec:
            command: ["sleep", {{ $v.drain.preStopSeconds | int | toString | quote }}]
          {{- else }}
          sleep:
            seconds: {{ $v.drain.preStopSeconds | int }}
          {{- end }}
      resources:
        {{- $res := deepCopy $v.workload.resources -}}
        {{- if $gpu -}}
        {{- $limits := default (dict) $res.limits -}}
        {{- $_ := set $limits $v.gpu.resourceName (include "tolk.gpuCount" . | int) -}}
        {{- $_ := set $res "limits" $limits -}}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "tolk.volumeMounts" . | nindent 8 }}
  volumes:
    {{- include "tolk.volumes" . | nindent 4 }}
{{- end -}}

{{- define "tolk.serveArgs" -}}
{{- $v := .Values -}}
- serve
- --config
- /etc/tolk/tolk.toml
{{- if gt (int $v.server.workers) 1 }}
- --workers
- {{ $v.server.workers | int | toString | quote }}
{{- end }}
{{- if eq $v.topology "frontend" }}
{{- if not $v.frontend.url }}{{ fail "topology frontend needs frontend.url: the vLLM deployment's OpenAI-compatible API, e.g. http://vllm-router.vllm.svc/v1" }}{{ end }}
- --model
- {{ printf "%s=openai+%s" $v.frontend.modelName $v.frontend.url | quote }}
{{- else if eq $v.topology "multi-node" }}
- --model
- {{ printf "%s=openai+http://%s:%d/v1" $v.multiNode.servedModelName (include "tolk.engineName" .) (int $v.multiNode.port) | quote }}
{{- end }}
{{- range $v.server.extraFlags }}
- {{ . | quote }}
{{- end }}
{{- range $v.workload.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "tolk.env" -}}
{{- $v := .Values -}}
# Offline: no model hub, no telemetry (nothing is downloaded at start).
- {name: HF_HUB_OFFLINE, value: "1"}
- {name: TRANSFORMERS_OFFLINE, value: "1"}
- {name: HF_DATASETS_OFFLINE, value: "1"}
- {name: HF_HUB_DISABLE_TELEMETRY, value: "1"}
- {name: VLLM_NO_USAGE_STATS, value: "1"}
- {name: VLLM_DO_NOT_TRACK, value: "1"}
- {name: DO_NOT_TRACK, value: "1"}
# Writable places under a read-only root filesystem (emptyDirs, or the StatefulSet's PVC).
- {name: HOME, value: /var/lib/tolk}
- {name: TOLK_HOME, value: /var/lib/tolk}
- {name: XDG_CACHE_HOME, value: /var/cache/tolk}
- {name: HF_HOME, value: /var/cache/tolk/huggingface}
- {name: VLLM_CACHE_ROOT, value: /var/cache/tolk/vllm}
- {name: TRITON_CACHE_DIR, value: /var/cache/tolk/triton}
- {name: TORCHINDUCTOR_CACHE_DIR, value: /var/cache/tolk/inductor}
{{- if include "tolk.authEnabled" . }}
- name: CHART_API_KEYS
  valueFrom: {secretKeyRef: {name: {{ include "tolk.authSecretName" . }}, key: api-keys}}
{{- if include "tolk.scrapeWithKey" . }}
- name: CHART_SCRAPE_KEY
  valueFrom: {secretKeyRef: {name: {{ include "tolk.authSecretName" . }}, key: scrape-key}}
- name: TOLK_API_KEYS
  value: "$(CHART_API_KEYS),$(CHART_SCRAPE_KEY)"
{{- else }}
- name: TOLK_API_KEYS
  value: "$(CHART_API_KEYS)"
{{- end }}
{{- end }}
{{- include "tolk.storeEnv" . }}
{{- with $v.workload.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* TOLK_STORE: a URL, a URL from a Secret, or the trial Redis; a password from a Secret
goes into the URL when the container starts ($(STORE_PASSWORD)), never into the spec. */}}
{{- define "tolk.storeEnv" -}}
{{- $s := .Values.store -}}
{{- if $s.urlSecret.name }}
- name: TOLK_STORE
  valueFrom: {secretKeyRef: {name: {{ $s.urlSecret.name }}, key: {{ $s.urlSecret.key }}}}
{{- else if or $s.url $s.bundledRedis.enabled }}
{{- $url := $s.url -}}
{{- $secret := $s.password.existingSecret -}}
{{- $key := $s.password.key -}}
{{- if $s.bundledRedis.enabled -}}
{{- if $s.url }}{{ fail "store.url and store.bundledRedis.enabled: choose one" }}{{ end -}}
{{- $url = printf "redis://%s:6379/0" (include "tolk.redisName" .) -}}
{{- $secret = include "tolk.redisName" . -}}
{{- $key = "password" -}}
{{- end -}}
{{- if $secret }}
- name: STORE_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: {{ $key }}}}
{{- if not (regexMatch "^rediss?://" $url) }}{{ fail "store.password applies to redis:// and rediss:// URLs" }}{{ end -}}
{{- if regexMatch "^rediss?://[^/@]*@" $url -}}
{{- $url = regexReplaceAll "^(rediss?://[^/@:]*)(:[^/@]*)?@" $url "${1}:$(STORE_PASSWORD)@" -}}
{{- else -}}
{{- $url = regexReplaceAll "^(rediss?://)" $url "${1}:$(STORE_PASSWORD)@" -}}
{{- end }}
{{- end }}
- name: TOLK_STORE
  value: {{ $url | quote }}
{{- end }}
{{- end -}}

{{- define "tolk.probes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet: {path: {{ $p.startup.path }}, port: http}
  periodSeconds: {{ $p.startup.periodSeconds }}
  timeoutSeconds: {{ $p.startup.probeTimeoutSeconds }}
  failureThreshold: {{ ceil (divf $p.startup.timeoutSeconds $p.startup.periodSeconds) | int }}
readinessProbe:
  httpGet: {path: {{ $p.readiness.path }}, port: http}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  timeoutSeconds: {{ $p.readiness.probeTimeoutSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
livenessProbe:
  httpGet: {path: {{ $p.liveness.path }}, port: http}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  timeoutSeconds: {{ $p.liveness.probeTimeoutSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
{{- end -}}

{{- define "tolk.volumeMounts" -}}
{{- $v := .Values -}}
- {name: config, mountPath: /etc/tolk, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- if eq $v.workload.kind "StatefulSet" }}
- {name: state, mountPath: /var/lib/tolk, subPath: home}
- {name: state, mountPath: /var/cache/tolk, subPath: cache}
{{- else }}
- {name: home, mountPath: /var/lib/tolk}
- {name: cache, mountPath: /var/cache/tolk}
{{- end }}
{{- if and (include "tolk.inProcessEngine" .) (ne $v.model.source "none") }}
- {name: model, mountPath: {{ $v.model.mountPath }}, readOnly: true}
{{- end }}
{{- if and $v.workload.shm.enabled (include "tolk.inProcessEngine" .) }}
- {name: dshm, mountPath: /dev/shm}
{{- end }}
{{- with $v.workload.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "tolk.volumes" -}}
{{- $v := .Values -}}
- name: config
  configMap: {name: {{ include "tolk.fullname" . }}}
- name: tmp
  emptyDir: {sizeLimit: 1Gi}
{{- if ne $v.workload.kind "StatefulSet" }}
- name: home
  emptyDir: {sizeLimit: 1Gi}
- name: cache
  emptyDir: {sizeLimit: 10Gi}
{{- end }}
{{- if and (include "tolk.inProcessEngine" .) (ne $v.model.source "none") }}
- name: model
{{- if eq $v.model.source "pvc" }}
  persistentVolumeClaim: {claimName: {{ include "tolk.modelClaimName" . }}, readOnly: true}
{{- else if eq $v.model.source "hostPath" }}
  hostPath: {path: {{ $v.model.hostPath.path }}, type: {{ $v.model.hostPath.type }}}
{{- else }}
{{- fail (printf "model.source must be pvc, hostPath or none, not %q" $v.model.source) }}
{{- end }}
{{- end }}
{{- if and $v.workload.shm.enabled (include "tolk.inProcessEngine" .) }}
- name: dshm
  emptyDir: {medium: Memory, sizeLimit: {{ $v.workload.shm.sizeLimit }}}
{{- end }}
{{- with $v.workload.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
