{{/*
tolk's settings as the chart writes them to the TOML config (ConfigMap `tolk.toml`), as YAML:
`include "tolk.settings" . | fromYaml` gives the effective values to every template (the HPA
target, the Ingress body size, the grace period), so that they agree with the server's.
*/}}
{{- define "tolk.settings" -}}
{{- $v := .Values -}}
{{- range $k := list "host" "port" "api_keys" "drain_timeout_s" "max_body_bytes" "insecure_no_auth" "public_metrics" "log_level" -}}
{{- if hasKey $v.config $k -}}
{{- fail (printf "config.%s is set by the chart: use server.*, auth.* or metrics.public instead" $k) -}}
{{- end -}}
{{- end -}}
{{- $s := dict "host" "0.0.0.0" "port" (int $v.server.port) "log_level" $v.server.logLevel "drain_timeout_s" $v.server.drainTimeoutSeconds "max_body_bytes" (int $v.server.maxBodyBytes) -}}
{{- if $v.metrics.public -}}{{- $_ := set $s "public_metrics" true -}}{{- end -}}
{{- if $v.auth.insecureNoAuth -}}{{- $_ := set $s "insecure_no_auth" true -}}{{- end -}}
{{- if include "tolk.inProcessEngine" . -}}
{{- $e := $v.engine -}}
{{- $_ := set $s "engine" $e.kind -}}
{{- $_ := set $s "max_num_seqs" (int $e.maxNumSeqs) -}}
{{- $_ := set $s "gpu_memory_utilization" $e.gpuMemoryUtilization -}}
{{- $_ := set $s "tensor_parallel_size" (int $e.tensorParallelSize) -}}
{{- $_ := set $s "data_parallel_size" (int $e.dataParallelSize) -}}
{{- $_ := set $s "dtype" $e.dtype -}}
{{- $_ := set $s "load_format" $e.loadFormat -}}
{{- if not (kindIs "invalid" $e.maxModelLen) -}}{{- $_ := set $s "max_model_len" (int $e.maxModelLen) -}}{{- end -}}
{{- if not (kindIs "invalid" $e.enforceEager) -}}{{- $_ := set $s "enforce_eager" $e.enforceEager -}}{{- end -}}
{{- if $e.profile -}}{{- $_ := set $s "profile" $e.profile -}}{{- end -}}
{{- if and (ne $v.model.source "none") (not (hasKey $v.config "models")) -}}
{{- $_ := set $s "model" (printf "%s/%s" (trimSuffix "/" $v.model.mountPath) $v.model.dir) -}}
{{- end -}}
{{- end -}}
{{- $s = mergeOverwrite $s (deepCopy $v.config) -}}
{{- toYaml $s -}}
{{- end -}}

{{/* A TOML value: a string, a boolean, a number (integral ones as integers: Helm reads
every number as a float), or an array of them. */}}
{{- define "tolk.toml.value" -}}
{{- $x := . -}}
{{- if kindIs "string" $x -}}
{{- toJson $x -}}
{{- else if kindIs "bool" $x -}}
{{- $x -}}
{{- else if or (kindIs "float64" $x) (kindIs "int" $x) (kindIs "int64" $x) -}}
{{- if eq (float64 (int64 $x)) (float64 $x) -}}{{- int64 $x -}}{{- else -}}{{- $x -}}{{- end -}}
{{- else if kindIs "slice" $x -}}
[{{- range $i, $e := $x -}}{{- if $i -}}, {{ end -}}{{- include "tolk.toml.value" $e -}}{{- end -}}]
{{- else -}}
{{- fail (printf "tolk config: %v cannot be written as a TOML value here (nested too deep?)" $x) -}}
{{- end -}}
{{- end -}}

{{- define "tolk.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{- . -}}{{- else -}}{{- toJson . -}}{{- end -}}
{{- end -}}

{{/* The scalar keys of a map, `key = value` per line (nulls left out). */}}
{{- define "tolk.toml.scalars" -}}
{{- $m := . -}}
{{- range $k := keys $m | sortAlpha -}}
{{- $x := index $m $k -}}
{{- if not (or (kindIs "invalid" $x) (kindIs "map" $x) (and (kindIs "slice" $x) $x (kindIs "map" (first $x)))) }}
{{ include "tolk.toml.key" $k }} = {{ include "tolk.toml.value" $x }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A table of tolk's settings holds values and arrays, no deeper tables. */}}
{{- define "tolk.toml.flat" -}}
{{- $name := index . 0 -}}
{{- range $k, $x := index . 1 -}}
{{- if or (kindIs "map" $x) (and (kindIs "slice" $x) $x (kindIs "map" (first $x))) -}}
{{- fail (printf "config.%s.%s: tolk's settings nest one table deep at most" $name $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A settings map as TOML: scalars, then [tables], then [[arrays of tables]]. */}}
{{- define "tolk.toml" -}}
{{- $m := . -}}
{{- include "tolk.toml.scalars" $m -}}
{{- range $k := keys $m | sortAlpha -}}
{{- $x := index $m $k -}}
{{- if kindIs "map" $x }}

[{{ include "tolk.toml.key" $k }}]
{{- include "tolk.toml.flat" (list $k $x) -}}
{{- include "tolk.toml.scalars" $x -}}
{{- end -}}
{{- end -}}
{{- range $k := keys $m | sortAlpha -}}
{{- $x := index $m $k -}}
{{- if and (kindIs "slice" $x) $x (kindIs "map" (first $x)) -}}
{{- range $t := $x }}

[[{{ include "tolk.toml.key" $k }}]]
{{- include "tolk.toml.flat" (list $k $t) -}}
{{- include "tolk.toml.scalars" $t -}}
{{- end -}}
{{- end -}}
{{- end }}
{{ end -}}
