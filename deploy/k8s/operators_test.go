package k8s

// The custom resources of the operators whose Go modules the module proxy
// does not serve (RabbitMQ Cluster Operator, CloudNativePG, OpsTree
// redis-operator). Each struct holds only the fields kvstack sets, named and
// typed as the operator's API reference documents them at the version
// docs/KUBERNETES.md names; decoding is strict, so a misspelt or unknown field fails.
// The operators' CRDs check the rest (crd_test.go).

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RabbitmqCluster is rabbitmq.com/v1beta1 (cluster-operator v2.22.3).
type RabbitmqCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RabbitmqClusterSpec `json:"spec,omitempty"`
}

type RabbitmqClusterSpec struct {
	Replicas    *int32                           `json:"replicas,omitempty"`
	Image       string                           `json:"image,omitempty"`
	Resources   *corev1.ResourceRequirements     `json:"resources,omitempty"`
	Persistence RabbitmqClusterPersistenceSpec   `json:"persistence,omitempty"`
	Rabbitmq    RabbitmqClusterConfigurationSpec `json:"rabbitmq,omitempty"`
	TLS         *RabbitmqClusterTLSSpec          `json:"tls,omitempty"`
	Affinity    *corev1.Affinity                 `json:"affinity,omitempty"`
}

// RabbitmqClusterTLSSpec is TLSSpec: the server's tls.crt and tls.key in
// SecretName (AMQPS on 5671); CaSecretName is for client certificates.
type RabbitmqClusterTLSSpec struct {
	SecretName             string `json:"secretName,omitempty"`
	CaSecretName           string `json:"caSecretName,omitempty"`
	DisableNonTLSListeners bool   `json:"disableNonTLSListeners,omitempty"`
}

// rabbitmqAMQPSPort is the operator's AMQPS port, open when spec.tls has
// a secretName; the default user's connection_string is then amqps://.
const rabbitmqAMQPSPort = 5671

// RabbitmqUser and RabbitmqPermission are the messaging-topology
// operator's rabbitmq.com/v1beta1 User and Permission (v1.20.1).
type RabbitmqUser struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RabbitmqUserSpec `json:"spec"`
}

type RabbitmqUserSpec struct {
	Tags                     []string                     `json:"tags,omitempty"`
	RabbitmqClusterReference RabbitmqClusterReference     `json:"rabbitmqClusterReference"`
	ImportCredentialsSecret  *corev1.LocalObjectReference `json:"importCredentialsSecret,omitempty"`
}

type RabbitmqClusterReference struct {
	Name string `json:"name"`
}

type RabbitmqPermission struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RabbitmqPermissionSpec `json:"spec"`
}

type RabbitmqPermissionSpec struct {
	User                     string                       `json:"user,omitempty"`
	UserReference            *corev1.LocalObjectReference `json:"userReference,omitempty"`
	Vhost                    string                       `json:"vhost"`
	Permissions              RabbitmqVhostPermissions     `json:"permissions"`
	RabbitmqClusterReference RabbitmqClusterReference     `json:"rabbitmqClusterReference"`
}

type RabbitmqVhostPermissions struct {
	Configure string `json:"configure,omitempty"`
	Write     string `json:"write,omitempty"`
	Read      string `json:"read,omitempty"`
}

type RabbitmqClusterPersistenceSpec struct {
	StorageClassName *string            `json:"storageClassName,omitempty"`
	Storage          *resource.Quantity `json:"storage,omitempty"`
}

type RabbitmqClusterConfigurationSpec struct {
	AdditionalPlugins []string `json:"additionalPlugins,omitempty"`
	AdditionalConfig  string   `json:"additionalConfig,omitempty"`
}

// What the RabbitMQ Cluster Operator makes of a RabbitmqCluster named N:
// Service N with port amqp 5672 and prometheus 15692, pods labelled
// app.kubernetes.io/name=N, and Secret N-default-user whose
// connection_string is amqp://user:pass@N.<ns>.svc:5672/.
const (
	rabbitmqAMQPPort    = 5672
	rabbitmqMetricsPort = 15692
	rabbitmqPodLabel    = "app.kubernetes.io/name"
	rabbitmqSecretTail  = "-default-user"
	rabbitmqSecretKey   = "connection_string"
)

// PostgresCluster is CloudNativePG's postgresql.cnpg.io/v1 Cluster (v1.30.0).
type PostgresCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              PostgresClusterSpec `json:"spec"`
}

type PostgresClusterSpec struct {
	Instances             int                         `json:"instances"`
	ImageName             string                      `json:"imageName,omitempty"`
	PrimaryUpdateStrategy string                      `json:"primaryUpdateStrategy,omitempty"`
	PostgresConfiguration PostgresConfiguration       `json:"postgresql,omitempty"`
	Bootstrap             *PostgresBootstrap          `json:"bootstrap,omitempty"`
	StorageConfiguration  PostgresStorage             `json:"storage,omitempty"`
	Affinity              PostgresAffinity            `json:"affinity,omitempty"`
	Resources             corev1.ResourceRequirements `json:"resources,omitempty"`
	Managed               *PostgresManaged            `json:"managed,omitempty"`
	Plugins               []PostgresPlugin            `json:"plugins,omitempty"`
	Monitoring            *PostgresMonitoring         `json:"monitoring,omitempty"`
}

// PostgresPlugin is PluginConfiguration: a CNPG-I plugin the instances
// use; isWALArchiver makes it the one that archives the WAL.
type PostgresPlugin struct {
	Name          string            `json:"name"`
	Enabled       *bool             `json:"enabled,omitempty"`
	IsWALArchiver *bool             `json:"isWALArchiver,omitempty"`
	Parameters    map[string]string `json:"parameters,omitempty"`
}

// ScheduledBackup is postgresql.cnpg.io/v1 ScheduledBackup (v1.30.0): a
// Backup of Cluster.Name on Schedule (a cron with seconds first).
type ScheduledBackup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScheduledBackupSpec `json:"spec"`
}

type ScheduledBackupSpec struct {
	Schedule             string                      `json:"schedule"`
	Immediate            *bool                       `json:"immediate,omitempty"`
	Suspend              *bool                       `json:"suspend,omitempty"`
	BackupOwnerReference string                      `json:"backupOwnerReference,omitempty"`
	Cluster              corev1.LocalObjectReference `json:"cluster"`
	Method               string                      `json:"method,omitempty"`
	Target               string                      `json:"target,omitempty"`
	PluginConfiguration  *BackupPluginConfiguration  `json:"pluginConfiguration,omitempty"`
}

type BackupPluginConfiguration struct {
	Name       string            `json:"name"`
	Parameters map[string]string `json:"parameters,omitempty"`
}

// ObjectStore is the Barman Cloud Plugin's barmancloud.cnpg.io/v1
// ObjectStore (plugin-barman-cloud v0.14.0); its configuration is
// barman-cloud's BarmanObjectStoreConfiguration.
type ObjectStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ObjectStoreSpec `json:"spec"`
}

type ObjectStoreSpec struct {
	RetentionPolicy string                  `json:"retentionPolicy,omitempty"`
	Configuration   BarmanObjectStoreConfig `json:"configuration"`
}

type BarmanObjectStoreConfig struct {
	DestinationPath string               `json:"destinationPath"`
	EndpointURL     string               `json:"endpointURL,omitempty"`
	S3Credentials   *BarmanS3Credentials `json:"s3Credentials,omitempty"`
	Wal             *BarmanCompression   `json:"wal,omitempty"`
	Data            *BarmanCompression   `json:"data,omitempty"`
}

type BarmanS3Credentials struct {
	AccessKeyID        *corev1.SecretKeySelector `json:"accessKeyId,omitempty"`
	SecretAccessKey    *corev1.SecretKeySelector `json:"secretAccessKey,omitempty"`
	InheritFromIAMRole bool                      `json:"inheritFromIAMRole,omitempty"`
}

type BarmanCompression struct {
	Compression string `json:"compression,omitempty"`
}

// barmanCloudPlugin is the Barman Cloud Plugin's name, in a Cluster's
// plugins and a backup's pluginConfiguration.
const barmanCloudPlugin = "barman-cloud.cloudnative-pg.io"

// PostgresManaged is ManagedConfiguration: roles the operator keeps in
// the database as declared.
type PostgresManaged struct {
	Roles []PostgresRole `json:"roles,omitempty"`
}

// PostgresRole is RoleConfiguration; its password is the `password` key
// of PasswordSecret (a basic-auth Secret whose `username` is Name).
type PostgresRole struct {
	Name            string                       `json:"name"`
	Comment         string                       `json:"comment,omitempty"`
	Ensure          string                       `json:"ensure,omitempty"`
	Login           bool                         `json:"login,omitempty"`
	InRoles         []string                     `json:"inRoles,omitempty"`
	ConnectionLimit int64                        `json:"connectionLimit,omitempty"`
	PasswordSecret  *corev1.LocalObjectReference `json:"passwordSecret,omitempty"`
}

// PostgresMonitoring is MonitoringConfiguration: the queries of the
// operator's own exporter (port metrics, 9187, on every instance), whose
// series are named cnpg_<query>_<column>.
type PostgresMonitoring struct {
	DisableDefaultQueries  *bool                  `json:"disableDefaultQueries,omitempty"`
	CustomQueriesConfigMap []PostgresConfigMapKey `json:"customQueriesConfigMap,omitempty"`
}

type PostgresConfigMapKey struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

type PostgresConfiguration struct {
	Parameters  map[string]string    `json:"parameters,omitempty"`
	Synchronous *PostgresSynchronous `json:"synchronous,omitempty"`
}

// PostgresSynchronous is SynchronousReplicaConfiguration: method any|first,
// dataDurability required|preferred.
type PostgresSynchronous struct {
	Method         string `json:"method"`
	Number         int    `json:"number"`
	DataDurability string `json:"dataDurability,omitempty"`
}

type PostgresBootstrap struct {
	InitDB *PostgresInitDB `json:"initdb,omitempty"`
}

type PostgresInitDB struct {
	Database string `json:"database,omitempty"`
	Owner    string `json:"owner,omitempty"`
}

type PostgresStorage struct {
	StorageClass *string `json:"storageClass,omitempty"`
	Size         string  `json:"size,omitempty"`
}

type PostgresAffinity struct {
	EnablePodAntiAffinity *bool  `json:"enablePodAntiAffinity,omitempty"`
	TopologyKey           string `json:"topologyKey,omitempty"`
	PodAntiAffinityType   string `json:"podAntiAffinityType,omitempty"`
}

// What CloudNativePG makes of a Cluster named N: Service N-rw (the primary)
// on 5432, pods labelled cnpg.io/cluster=N, and Secret N-app whose uri is
// postgresql://owner:pass@N-rw.<ns>:5432/database.
const (
	postgresPort        = 5432
	postgresPodLabel    = "cnpg.io/cluster"
	postgresSecretKey   = "uri"
	postgresMetricsPort = "metrics" // 9187, the instance manager's exporter
	postgresMetricsNum  = 9187
)

// RedisCluster and Redis are the OpsTree redis-operator's
// redis.redis.opstreelabs.in/v1beta2 kinds (v0.26.0).
type RedisCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RedisClusterSpec `json:"spec"`
}

type RedisClusterSpec struct {
	TLS                *RedisTLSConfig      `json:"TLS,omitempty"`
	ACL                *RedisACLConfig      `json:"acl,omitempty"`
	Env                []corev1.EnvVar      `json:"env,omitempty"`
	ClusterSize        *int32               `json:"clusterSize"`
	ClusterVersion     *string              `json:"clusterVersion,omitempty"`
	Port               *int                 `json:"port,omitempty"`
	PersistenceEnabled *bool                `json:"persistenceEnabled,omitempty"`
	KubernetesConfig   RedisKubernetesConf  `json:"kubernetesConfig"`
	RedisExporter      *RedisExporter       `json:"redisExporter,omitempty"`
	RedisConfig        *RedisConfig         `json:"redisConfig,omitempty"`
	RedisLeader        RedisRole            `json:"redisLeader,omitempty"`
	RedisFollower      RedisRole            `json:"redisFollower,omitempty"`
	Storage            *RedisClusterStorage `json:"storage,omitempty"`
}

type Redis struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              RedisSpec `json:"spec"`
}

type RedisSpec struct {
	TLS              *RedisTLSConfig     `json:"TLS,omitempty"`
	ACL              *RedisACLConfig     `json:"acl,omitempty"`
	Env              []corev1.EnvVar     `json:"env,omitempty"`
	KubernetesConfig RedisKubernetesConf `json:"kubernetesConfig"`
	RedisExporter    *RedisExporter      `json:"redisExporter,omitempty"`
	RedisConfig      *RedisConfig        `json:"redisConfig,omitempty"`
}

// RedisExporter is common.RedisExporter: a redis_exporter sidecar in each
// pod, its container port named redis-exporter (9121 unless Port), given
// REDIS_ADDR and REDIS_PASSWORD (redisSecret's) by the operator, then Env,
// sorted by name, stably (so that a REDIS_PASSWORD of Env comes last, and
// is the one the kubelet keeps).
type RedisExporter struct {
	Enabled         bool                         `json:"enabled,omitempty"`
	Port            *int                         `json:"port,omitempty"`
	Image           string                       `json:"image"`
	Resources       *corev1.ResourceRequirements `json:"resources,omitempty"`
	ImagePullPolicy corev1.PullPolicy            `json:"imagePullPolicy,omitempty"`
	Env             *[]corev1.EnvVar             `json:"env,omitempty"`
}

// RedisTLSConfig is common.TLSConfig: the server's certificate, key and
// CA (the keys of Secret's secret, mounted at /tls); the operator gives
// the container REDIS_TLS_CERT, REDIS_TLS_CERT_KEY and (with ca)
// REDIS_TLS_CA_CERT, but the image's entrypoint (OT-CONTAINER-KIT/redis)
// reads the CA as REDIS_TLS_CA_KEY, so spec.env must set it.
type RedisTLSConfig struct {
	CaCertFile  string                    `json:"ca,omitempty"`
	CertKeyFile string                    `json:"cert,omitempty"`
	KeyFile     string                    `json:"key,omitempty"`
	Secret      corev1.SecretVolumeSource `json:"secret"`
}

// RedisACLConfig is common.ACLConfig: Secret's user.acl becomes the
// nodes' aclfile (/etc/redis/user.acl).
type RedisACLConfig struct {
	Secret                *corev1.SecretVolumeSource `json:"secret,omitempty"`
	PersistentVolumeClaim *string                    `json:"persistentVolumeClaim,omitempty"`
}

// redisTLSMount is where the operator mounts TLS.secret in the Redis
// container; redisImageCAVar the image's variable for the CA file.
const (
	redisTLSMount   = "/tls"
	redisImageCAVar = "REDIS_TLS_CA_KEY"
)

// RedisKubernetesConf is common.KubernetesConfig.
type RedisKubernetesConf struct {
	Image           string                       `json:"image"`
	ImagePullPolicy corev1.PullPolicy            `json:"imagePullPolicy,omitempty"`
	Resources       *corev1.ResourceRequirements `json:"resources,omitempty"`
	RedisSecret     *RedisSecret                 `json:"redisSecret,omitempty"`
}

// RedisSecret is common.ExistingPasswordSecret.
type RedisSecret struct {
	Name *string `json:"name,omitempty"`
	Key  *string `json:"key,omitempty"`
}

// RedisConfig is common.RedisConfig. AdditionalRedisConfig names a
// ConfigMap whose key redis-additional.conf the image's entrypoint appends
// to redis.conf at start; DynamicConfig is CONFIG SET by the operator once
// the pods are up; MaxMemoryPercentOfLimit reaches only an environment
// variable that the operator's bootstrap agent reads behind the
// GenerateConfigInInitContainer feature gate, off by default.
type RedisConfig struct {
	MaxMemoryPercentOfLimit *int     `json:"maxMemoryPercentOfLimit,omitempty"`
	DynamicConfig           []string `json:"dynamicConfig,omitempty"`
	AdditionalRedisConfig   *string  `json:"additionalRedisConfig,omitempty"`
}

// redisAdditionalKey is the key of that ConfigMap the image reads.
const redisAdditionalKey = "redis-additional.conf"

// RedisRole is RedisLeader/RedisFollower.
type RedisRole struct {
	Replicas                  *int32                            `json:"replicas,omitempty"`
	RedisConfig               *RedisConfig                      `json:"redisConfig,omitempty"`
	PodDisruptionBudget       *RedisPDB                         `json:"pdb,omitempty"`
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
}

type RedisPDB struct {
	Enabled        bool   `json:"enabled,omitempty"`
	MinAvailable   *int32 `json:"minAvailable,omitempty"`
	MaxUnavailable *int32 `json:"maxUnavailable,omitempty"`
}

type RedisClusterStorage struct {
	NodeConfVolume              bool                         `json:"nodeConfVolume,omitempty"`
	NodeConfVolumeClaimTemplate corev1.PersistentVolumeClaim `json:"nodeConfVolumeClaimTemplate,omitempty"`
	VolumeClaimTemplate         corev1.PersistentVolumeClaim `json:"volumeClaimTemplate,omitempty"`
}

// What the redis-operator makes of a Redis named N: Service N:6379 on pods
// app=N. Of a RedisCluster named N: Services N-leader and N-follower, pods
// N-leader-<i> (app=N-leader) behind headless Service N-leader-headless,
// followers likewise; the port is spec.port (6379 by default).
const (
	redisDefaultPort     = 6379
	redisPodLabel        = "app"
	redisExporterPort    = "redis-exporter"
	redisExporterDefault = 9121
)
