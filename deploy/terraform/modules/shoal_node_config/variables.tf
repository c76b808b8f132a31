variable "node_id" {
  description = "This node's id: its index in node_addresses."
  type        = number

  validation {
    condition     = var.node_id >= 0 && floor(var.node_id) == var.node_id
    error_message = "The node_id must be an integer >= 0."
  }
}

variable "node_addresses" {
  description = "Private address (IP or DNS name) of every founding node of the cluster, indexed by node id: cluster.seeds (the same on every node), this node's rpc_listen and its advertised Kafka address are built from it."
  type        = list(string)

  validation {
    condition     = length(var.node_addresses) >= 1
    error_message = "The node_addresses list needs at least one address."
  }
}

variable "listen_host" {
  description = "Interface the Kafka and admin APIs bind to; the RPC listener binds to the node's own address."
  type        = string
  default     = "0.0.0.0"
}

variable "kafka_port" {
  description = "Kafka API port."
  type        = number
  default     = 9092
}

variable "admin_port" {
  description = "Admin HTTP port (/v1/status/ready, /metrics)."
  type        = number
  default     = 9644
}

variable "rpc_port" {
  description = "Node-to-node RPC port (cluster.rpc_listen and seeds)."
  type        = number
  default     = 33145
}

variable "data_dir" {
  description = "Hot tier directory: the mount point of the node's data disk."
  type        = string
  default     = "/var/lib/shoal"
}

variable "config_path" {
  description = "Where cloud-init writes shoal.yaml."
  type        = string
  default     = "/etc/shoal/shoal.yaml"
}

variable "install_dir" {
  description = "Shoal is installed into a virtualenv at <install_dir>/venv."
  type        = string
  default     = "/opt/shoal"
}

variable "service_user" {
  description = "Unix user the service runs as; the install step creates it as a system user when missing."
  type        = string
  default     = "shoal"
}

variable "python" {
  description = "Python >= 3.11 interpreter used to create the virtualenv."
  type        = string
  default     = "python3"
}

variable "shoal_pip_spec" {
  description = "What pip installs: a pinned release (shoal==0.1.0), a wheel URL or a VCS URL. Pin it: every node of a cluster must run the same version."
  type        = string
  default     = "shoal==0.1.0"
}

variable "pip_extra_args" {
  description = "Extra pip arguments, e.g. [\"--index-url\", \"https://pypi.internal/simple\"] or [\"--constraint\", \"/etc/shoal/constraints.txt\"]."
  type        = list(string)
  default     = []
}

variable "data_disk_mode" {
  description = "How the data disk is prepared at every boot: instance_store (RAID 0 over all local NVMe instance-store disks), ebs (the volume named by ebs_volume_id) or none (data_dir on the root disk)."
  type        = string
  default     = "instance_store"

  validation {
    condition     = contains(["instance_store", "ebs", "none"], var.data_disk_mode)
    error_message = "The data_disk_mode must be instance_store, ebs or none."
  }
}

variable "ebs_volume_id" {
  description = "With data_disk_mode = ebs: the EBS volume id (vol-...) holding the hot tier."
  type        = string
  default     = ""
}

variable "cloud_storage_url" {
  description = "Cold tier: s3://BUCKET/PREFIX (or file://PATH for a local test)."
  type        = string
}

variable "cloud_storage_region" {
  description = "Bucket region."
  type        = string
  default     = "us-east-1"
}

variable "cloud_storage_endpoint" {
  description = "S3-compatible endpoint URL (MinIO, a VPC endpoint); empty for AWS's own."
  type        = string
  default     = ""
}

variable "cloud_storage_settings" {
  description = "Other cloud_storage keys of shoal.yaml (upload_interval, upload_concurrency, upload_bandwidth, chunk_size, cache_size, cache_dir, remote_write_default). No credentials: nodes use their instance profile."
  type        = map(string)
  default     = {}

  validation {
    condition = alltrue([for key in keys(var.cloud_storage_settings) : contains(
      ["upload_interval", "upload_concurrency", "upload_bandwidth", "chunk_size", "cache_dir", "cache_size", "remote_write_default"], key
    )])
    error_message = "The cloud_storage_settings keys must be among upload_interval, upload_concurrency, upload_bandwidth, chunk_size, cache_dir, cache_size, remote_write_default (url, region, endpoint have their own variables; keys are never written)."
  }
}

variable "tiers" {
  description = "Named retention tiers (shoal.yaml tiers): name -> {local_retention_bytes, local_retention_ms, retention_bytes, retention_ms, upload_compression}."
  type        = map(map(string))
  default = {
    default = {
      local_retention_bytes = "1GiB"
      local_retention_ms    = "6h"
      retention_bytes       = "-1"
      retention_ms          = "7d"
    }
  }

  validation {
    condition = alltrue(flatten([for tier in values(var.tiers) : [for key in keys(tier) : contains(
      ["local_retention_bytes", "local_retention_ms", "retention_bytes", "retention_ms", "upload_compression"], key
    )]]))
    error_message = "Each tier may set only local_retention_bytes, local_retention_ms, retention_bytes, retention_ms and upload_compression."
  }
}

variable "topic_tiers" {
  description = "Topic name glob -> tier name, in order: the first matching pattern wins (a list, because Terraform maps are sorted by key)."
  type = list(object({
    pattern = string
    tier    = string
  }))
  default = []

  validation {
    condition     = alltrue([for rule in var.topic_tiers : length(rule.pattern) > 0 && length(rule.tier) > 0])
    error_message = "Each topic_tiers rule needs a pattern and a tier."
  }
}

variable "auto_create_topics" {
  description = "Kafka's auto.create.topics.enable."
  type        = bool
  default     = true
}

variable "default_partitions" {
  description = "Partitions of auto-created topics and of CreateTopics with -1."
  type        = number
  default     = 1
}

variable "default_replication_factor" {
  description = "Replication factor of auto-created topics and of CreateTopics with -1; written capped at the number of node_addresses."
  type        = number
  default     = 3

  validation {
    condition     = var.default_replication_factor >= 1 && floor(var.default_replication_factor) == var.default_replication_factor
    error_message = "The default_replication_factor must be an integer >= 1."
  }
}

variable "log_settings" {
  description = "The log section of shoal.yaml (segment_bytes, segment_ms, flush, flush_interval)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for key in keys(var.log_settings) : contains(["segment_bytes", "segment_ms", "flush", "flush_interval"], key)])
    error_message = "The log_settings keys must be among segment_bytes, segment_ms, flush, flush_interval."
  }
}

variable "log_level" {
  description = "DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"
}

variable "open_files_limit" {
  description = "LimitNOFILE of the service: segments, indexes and client sockets all hold descriptors."
  type        = number
  default     = 1048576
}

variable "stop_timeout_seconds" {
  description = "How long systemd waits after SIGTERM for a clean shutdown (flush, close segments) before SIGKILL."
  type        = number
  default     = 120
}
