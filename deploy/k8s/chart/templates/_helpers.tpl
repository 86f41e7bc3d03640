{{/* The kvstack image: registry/repository, at the digest or the tag. */}}
{{- define "kvstack.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{ .Values.image.registry }}/{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.registry }}/{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "kvstack.labels" -}}
app.kubernetes.io/part-of: kvstack
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The monitoring objects' labels: ours and the platform's selector. */}}
{{- define "kvstack.monitoringLabels" -}}
{{ include "kvstack.labels" . }}
{{- range $k, $v := .Values.monitoring.releaseLabels }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end -}}

{{/* Where the binaries find the engines, as environment variables. */}}
{{- define "kvstack.databaseURL" -}}
{{- include "kvstack.databaseURLAs" (dict "Values" .Values "owner" false) }}
{{- end -}}

{{/* The owner's: the migrations, then the grants to the other roles. */}}
{{- define "kvstack.ownerDatabaseURL" -}}
{{- include "kvstack.databaseURLAs" (dict "Values" .Values "owner" true) }}
{{- if eq .Values.postgresql.mode "operator" }}
- name: KV_MIGRATE_APP_ROLES
  value: kvstack_app
- name: KV_MIGRATE_MONITOR_ROLES
  value: kvstack_monitor
{{- else }}
{{- with .Values.postgresql.external.appRoles }}
- name: KV_MIGRATE_APP_ROLES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.postgresql.external.monitorRoles }}
- name: KV_MIGRATE_MONITOR_ROLES
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "kvstack.databaseURLAs" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
{{- if eq .Values.postgresql.mode "operator" }}
{{- if .owner }}
      name: kvstack-pg-app
{{- else }}
      name: {{ .Values.postgresql.operator.appSecret }}
{{- end }}
      key: uri
{{- if .Values.postgresql.operator.sslmode }}
# TLS to CloudNativePG, whose server certificate its own CA signs for the
# Services' names (kvstack-pg-rw among them): verified against that CA.
- name: PG_SSLMODE
  value: {{ .Values.postgresql.operator.sslmode }}
- name: PG_SSLROOTCERT
  value: /etc/kvstack/postgres-ca/ca.crt
{{- end }}
{{- else }}
      name: {{ .Values.postgresql.external.secret }}
      key: {{ .Values.postgresql.external.key }}
{{- end }}
{{- end -}}

{{/* RabbitMQ as one role's user (api, consumer, migrations). */}}
{{- define "kvstack.rabbitmqURLAs" -}}
- name: RABBITMQ_URL
  valueFrom:
    secretKeyRef:
{{- if eq .Values.rabbitmq.mode "operator" }}
      name: {{ (index .Values.rabbitmq.operator.users .user).secret }}
      key: uri
{{- else }}
      name: {{ .Values.rabbitmq.external.secret }}
      key: {{ .Values.rabbitmq.external.key }}
{{- end }}
{{- if include "kvstack.rabbitmqCAEnabled" . }}
# TLS to RabbitMQ: its certificate verified against the release's CA.
- name: RABBITMQ_TLS_CA_FILE
  value: /etc/kvstack/rabbitmq-ca/ca.crt
{{- end }}
- name: RABBITMQ_QUEUE_TYPE
  value: quorum
{{- end -}}

{{- define "kvstack.redisExporterEnv" -}}
{{- if .Values.redis.operator.acl.enabled }}
# As kvstack_monitor (Secret acl.monitorSecret: username, password), which
# may read the server's statistics and no key, not as the default user:
# the operator gives the sidecar REDIS_PASSWORD from redisSecret (the
# default user's), then these, in that order; of two variables of one
# name the kubelet keeps the last.
env:
  - name: REDIS_USER
    valueFrom:
      secretKeyRef:
        name: {{ .Values.redis.operator.acl.monitorSecret }}
        key: username
  - name: REDIS_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ .Values.redis.operator.acl.monitorSecret }}
        key: password
{{- end }}
{{- end -}}

{{- define "kvstack.redisEnv" -}}
{{- if and (eq .Values.redis.mode "operator") .Values.redis.operator.acl.enabled }}
# The app's ACL user (its Secret's username and password), not the default.
- name: REDIS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.operator.acl.appSecret }}
      key: username
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.operator.acl.appSecret }}
      key: password
{{- else }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.passwordSecret.name }}
      key: {{ .Values.redis.passwordSecret.key }}
{{- end }}
{{- if eq .Values.redis.mode "operator" }}
{{- $svc := include "kvstack.redisService" . }}
- name: REDIS_ADDR
  value: {{ if .Values.redis.operator.tls }}rediss://{{ end }}{{ $svc }}:6379
{{- if eq .Values.redis.operator.topology "cluster" }}
- name: REDIS_CLUSTER
  value: "true"
{{- end }}
{{- if .Values.redis.operator.tls }}
# TLS to Redis: every node's certificate verified against the release's
# CA, for the Service's name.
- name: REDIS_TLS_CA_FILE
  value: /etc/kvstack/redis-ca/ca.crt
- name: REDIS_TLS_SERVER_NAME
  value: {{ $svc }}.{{ .Release.Namespace }}.svc
{{- end }}
{{- else }}
- name: REDIS_ADDR
  value: {{ required "redis.external.address is required when redis.mode is external" .Values.redis.external.address | quote }}
{{- if .Values.redis.external.cluster }}
- name: REDIS_CLUSTER
  value: "true"
{{- end }}
{{- end }}
{{- end -}}

{{/* The Service of the operator's Redis the clients dial. */}}
{{- define "kvstack.redisService" -}}
{{- if eq .Values.redis.operator.topology "cluster" }}kvstack-redis-leader{{ else }}kvstack-redis{{ end }}
{{- end -}}

{{- define "kvstack.tracingEnv" -}}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.tracing.endpoint | default "http://kvstack-jaeger:4318" | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: http/protobuf
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.tracing.sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.tracing.samplerArg | quote }}
{{- end -}}

{{/* The port Prometheus scrapes: admin once the binaries serve one. */}}
{{/* A container's hardening, the "restricted" Pod Security profile. */}}
{{- define "kvstack.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "kvstack.podSecurity" -}}
automountServiceAccountToken: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* A peer in the monitoring namespace with the given pod labels. */}}
{{- define "kvstack.monitoringPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .root.Values.monitoring.namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .labels | nindent 6 }}
{{- end -}}

{{/* DNS, out: kube-dns, or NodeLocal DNSCache's address. */}}
{{- define "kvstack.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
{{- if .Values.networkPolicy.nodeLocalDNS }}
    - ipBlock:
        cidr: {{ .Values.networkPolicy.nodeLocalDNS }}/32
{{- end }}
  ports:
    - { port: 53, protocol: UDP }
    - { port: 53, protocol: TCP }
{{- end -}}

{{/* The message signing keys, API and consumer alike. */}}
{{- define "kvstack.messageKeys" -}}
- name: KV_MESSAGE_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.messages.keysSecret.name }}
      key: {{ .Values.messages.keysSecret.key }}
{{- end -}}

{{/* The HTTPRoute's filters of every rule (.: .Values.edge): a client's
X-Real-IP removed always (the API takes it as client.address, which nginx
overwrites with $remote_addr and the Gateway API cannot: without it the API
records its peer, the Gateway's proxy), and clients' trace context removed
unless gateway.trustTraceContext. */}}
{{- define "kvstack.edgeFilters" -}}
filters:
  - type: RequestHeaderModifier
    requestHeaderModifier:
      remove: [X-Real-IP{{ if not .gateway.trustTraceContext }}, traceparent, tracestate, baggage{{ end }}]
{{- if .hsts }}
  - type: ResponseHeaderModifier
    responseHeaderModifier:
      set:
        - name: Strict-Transport-Security
          value: {{ .hsts | quote }}
{{- end }}
{{- end }}

{{/*
CloudNativePG's CA certificate (Secret kvstack-pg-ca, key ca.crt: never
its key, ca.key), for the containers that verify the server: a volume and
its mount, each empty unless they are needed.
*/}}
{{- define "kvstack.pgCAEnabled" -}}
{{- if and (eq .Values.postgresql.mode "operator") .Values.postgresql.operator.sslmode }}true{{ end }}
{{- end -}}

{{- define "kvstack.pgCAMount" -}}
{{- if include "kvstack.pgCAEnabled" . }}
- name: postgres-ca
  mountPath: /etc/kvstack/postgres-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kvstack.pgCAVolume" -}}
{{- if include "kvstack.pgCAEnabled" . }}
- name: postgres-ca
  secret:
    secretName: kvstack-pg-ca
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{/*
The CA certificate RabbitMQ's is verified with (Secret kvstack-rabbitmq-tls,
key ca.crt: never the server's tls.key).
*/}}
{{- define "kvstack.rabbitmqCAEnabled" -}}
{{- if and (eq .Values.rabbitmq.mode "operator") .Values.rabbitmq.operator.tls }}true{{ end }}
{{- end -}}

{{- define "kvstack.redisCAEnabled" -}}
{{- if and (eq .Values.redis.mode "operator") .Values.redis.operator.tls }}true{{ end }}
{{- end -}}

{{/* The release's own CA (ca.yaml): for RabbitMQ's and Redis' certificates. */}}
{{- define "kvstack.internalCAEnabled" -}}
{{- if or (include "kvstack.rabbitmqCAEnabled" .) (include "kvstack.redisCAEnabled" .) }}true{{ end }}
{{- end -}}

{{- define "kvstack.caEnabled" -}}
{{- if or (include "kvstack.pgCAEnabled" .) (include "kvstack.internalCAEnabled" .) }}true{{ end }}
{{- end -}}

{{/* The CA certificate Redis' is verified with (Secret kvstack-redis-tls,
key ca.crt alone): the API's and the consumers'. */}}
{{- define "kvstack.redisCAMount" -}}
{{- if include "kvstack.redisCAEnabled" . }}
- name: redis-ca
  mountPath: /etc/kvstack/redis-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kvstack.redisCAVolume" -}}
{{- if include "kvstack.redisCAEnabled" . }}
- name: redis-ca
  secret:
    secretName: kvstack-redis-tls
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "kvstack.rabbitmqCAMount" -}}
{{- if include "kvstack.rabbitmqCAEnabled" . }}
- name: rabbitmq-ca
  mountPath: /etc/kvstack/rabbitmq-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "kvstack.rabbitmqCAVolume" -}}
{{- if include "kvstack.rabbitmqCAEnabled" . }}
- name: rabbitmq-ca
  secret:
    secretName: kvstack-rabbitmq-tls
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}
