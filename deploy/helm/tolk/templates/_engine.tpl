{{/* A pod of the multi-node engine group; (list $ "leader"|"worker"). */}}
{{- define "tolk.enginePodSpec" -}}
{{- $ := index . 0 -}}
{{- $role := index . 1 -}}
{{- $v := $.Values -}}
{{- $m := $v.multiNode -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with (mergeOverwrite (deepCopy $m.nodeSelector) (deepCopy $v.gpu.nodeSelector)) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (concat $m.tolerations $v.gpu.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: vllm-{{ $role }}
    image: {{ include "tolk.imageRef" (list $m.image "v0.26.0") }}
    imagePullPolicy: {{ $m.image.pullPolicy }}
    command: ["/bin/bash", "-ec"]
    args:
      {{- if eq $role "leader" }}
      - |
        ray start --head --port={{ $m.rayPort }} --disable-usage-stats
        # Wait (bounded) until every pod of the group has joined the Ray cluster.
        for _ in $(seq 1 {{ div (int $m.startupSeconds) 5 }}); do
          nodes=$(python3 -c 'import ray; ray.init(address="auto", logging_level="ERROR"); print(sum(n["Alive"] for n in ray.nodes()))' 2>/dev/null || echo 0)
          [ "$nodes" -ge "$LWS_GROUP_SIZE" ] && break
          sleep 5
        done
        exec vllm serve {{ printf "%s/%s" (trimSuffix "/" $v.model.mountPath) $v.model.dir }} \
          --served-model-name {{ $m.servedModelName }} --host 0.0.0.0 --port {{ $m.port }} \
          --tensor-parallel-size {{ $m.tensorParallelSize }} \
          --pipeline-parallel-size {{ $m.pipelineParallelSize }} \
          --distributed-executor-backend ray{{ range $m.extraArgs }} {{ . | squote }}{{ end }}
      {{- else }}
      - exec ray start --address="$LWS_LEADER_ADDRESS:{{ $m.rayPort }}" --block --disable-usage-stats
      {{- end }}
    env:
      - {name: HF_HUB_OFFLINE, value: "1"}
      - {name: TRANSFORMERS_OFFLINE, value: "1"}
      - {name: HF_DATASETS_OFFLINE, value: "1"}
      - {name: VLLM_NO_USAGE_STATS, value: "1"}
      - {name: DO_NOT_TRACK, value: "1"}
      - {name: RAY_USAGE_STATS_ENABLED, value: "0"}
      - {name: HOME, value: /var/lib/engine}
      - {name: XDG_CACHE_HOME, value: /var/cache/engine}
      - {name: HF_HOME, value: /var/cache/engine/huggingface}
      - {name: VLLM_CACHE_ROOT, value: /var/cache/engine/vllm}
      - {name: TRITON_CACHE_DIR, value: /var/cache/engine/triton}
    {{- if eq $role "leader" }}
    ports:
      - {name: http, containerPort: {{ $m.port }}, protocol: TCP}
      - {name: ray, containerPort: {{ $m.rayPort }}, protocol: TCP}
    startupProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 10
      failureThreshold: {{ div (int $m.startupSeconds) 10 }}
    readinessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 5
    livenessProbe:
      httpGet: {path: /health, port: http}
      periodSeconds: 10
      failureThreshold: 3
    {{- end }}
    resources:
      {{- $res := deepCopy $m.resources -}}
      {{- $limits := default (dict) $res.limits -}}
      {{- $_ := set $limits $v.gpu.resourceName (int $m.gpusPerPod) -}}
      {{- $_ := set $res "limits" $limits }}
      {{- toYaml $res | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - {name: dshm, mountPath: /dev/shm}
      - {name: tmp, mountPath: /tmp}
      - {name: home, mountPath: /var/lib/engine}
      - {name: cache, mountPath: /var/cache/engine}
      {{- if ne $v.model.source "none" }}
      - {name: model, mountPath: {{ $v.model.mountPath }}, readOnly: true}
      {{- end }}
volumes:
  - name: dshm
    emptyDir: {medium: Memory, sizeLimit: {{ $m.shmSizeLimit }}}
  - name: tmp
    emptyDir: {sizeLimit: 20Gi}
  - name: home
    emptyDir: {sizeLimit: 1Gi}
  - name: cache
    emptyDir: {sizeLimit: 20Gi}
  {{- if eq $v.model.source "pvc" }}
  - name: model
    persistentVolumeClaim: {claimName: {{ include "tolk.modelClaimName" $ }}, readOnly: true}
  {{- else if eq $v.model.source "hostPath" }}
  - name: model
    hostPath: {path: {{ $v.model.hostPath.path }}, type: {{ $v.model.hostPath.type }}}
  {{- end }}
{{- end -}}
