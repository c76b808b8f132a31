# ---------------------------------------------------------------------------------------
# Cluster shape

variable "name" {
  description = "Name of the cluster: prefixes every resource name and is the default bucket prefix."
  type        = string
  default     = "shoal"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "The name must be 1-20 characters of lowercase letters, digits and '-', starting with a letter (it becomes part of the bucket name)."
  }
}

variable "node_count" {
  description = "Number of broker instances. Node ids are 0..node_count-1, spread round-robin over subnet_ids."
  type        = number
  default     = 3

  validation {
    condition     = var.node_count >= 1 && var.node_count <= 32 && floor(var.node_count) == var.node_count
    error_message = "The node_count must be an integer from 1 to 32."
  }
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone (3 for a 3-node cluster), all in one VPC. Nodes need outbound HTTPS (NAT gateway or VPC endpoints for S3, and PyPI access or a mirror) to install Shoal."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "Give at least one subnet id."
  }
}

variable "instance_type" {
  description = "EC2 instance type. With data_disk = instance_store it must have local NVMe instance storage (i4i, i4g, im4gn, is4gen, i3en, m6id, r6id, c6id, ...)."
  type        = string
  default     = "i4i.large"
}

variable "ami_id" {
  description = "AMI to boot; null picks the latest Ubuntu 24.04 LTS for the instance type's architecture. Any image with cloud-init, systemd and Python >= 3.11 works."
  type        = string
  default     = null
}

variable "root_volume_size_gb" {
  description = "Root disk size (OS, the Shoal virtualenv, logs)."
  type        = number
  default     = 30
}

variable "data_disk" {
  description = "Where the hot tier lives: instance_store (local NVMe, fastest, blank again after a stop/start or host failure) or ebs (a gp3 volume per node that survives instance replacement)."
  type        = string
  default     = "instance_store"

  validation {
    condition     = contains(["instance_store", "ebs"], var.data_disk)
    error_message = "The data_disk must be instance_store or ebs."
  }
}

variable "ebs_data_volume" {
  description = "With data_disk = ebs: size and performance of each node's gp3 data volume."
  type = object({
    size_gb          = number
    iops             = number
    throughput_mibps = number
  })
  default = {
    size_gb          = 500
    iops             = 6000
    throughput_mibps = 500
  }
}

variable "use_spread_placement_group" {
  description = "Place the nodes on distinct racks (an EC2 spread placement group: at most 7 nodes per availability zone)."
  type        = bool
  default     = true
}

variable "key_name" {
  description = "EC2 key pair for SSH; null (the default) means none: use SSM Session Manager (enable_ssm)."
  type        = string
  default     = null
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore so operators reach nodes with Session Manager instead of SSH."
  type        = bool
  default     = true
}

variable "disable_api_termination" {
  description = "EC2 termination protection for the brokers."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------
# Network access

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
  description = "Node-to-node RPC port (cluster.rpc_listen on each node's private IP, and the seeds): Raft between the nodes, open only between them."
  type        = number
  default     = 33145
}

variable "private_ip_first_host_number" {
  description = "Nodes get fixed private IPs, so that every node's cluster.seeds can name all of them before anything is created: the first node in each subnet gets this host number of the subnet (10 in 10.0.1.0/24 is 10.0.1.10), the next node in the same subnet the next number. Pick numbers nothing else in the subnets uses; AWS reserves 0-3."
  type        = number
  default     = 10
}

variable "private_ips" {
  description = "Instead of private_ip_first_host_number: the private IP of each node, indexed by node id; node i must get an address in subnet_ids[i % length(subnet_ids)]."
  type        = list(string)
  default     = null
}

variable "kafka_allowed_cidrs" {
  description = "IPv4 CIDRs allowed to reach the Kafka port (your clients). The RPC and admin ports are never opened to CIDRs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.kafka_allowed_cidrs : can(cidrnetmask(cidr)) && cidr != "0.0.0.0/0"])
    error_message = "Each kafka_allowed_cidrs entry must be an IPv4 CIDR, and not 0.0.0.0/0."
  }
}

variable "kafka_allowed_security_group_ids" {
  description = "Security groups (of your clients) allowed to reach the Kafka port."
  type        = list(string)
  default     = []
}

variable "admin_allowed_security_group_ids" {
  description = "Security groups (monitoring, bastion) allowed to reach the admin port besides the nodes themselves."
  type        = list(string)
  default     = []
}

variable "allow_http_egress" {
  description = "Allow outbound HTTP (port 80): Ubuntu's package mirrors use it. Outbound HTTPS (S3, PyPI, SSM) is always allowed."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------
# Bucket (cold tier)

variable "bucket_name" {
  description = "Name of the bucket to create; null means <name>-<account id>-<region>."
  type        = string
  default     = null
}

variable "bucket_prefix" {
  description = "Key prefix of this cluster inside the bucket, the same for every node; null means the cluster name. The nodes' IAM role is limited to it."
  type        = string
  default     = null
}

variable "bucket_versioning" {
  description = "Keep overwritten and deleted objects as noncurrent versions for noncurrent_version_expiration_days (protects against an operator or bug deleting the cold tier; costs the storage of what retention deletes, for that many days)."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version is kept (with bucket_versioning)."
  type        = number
  default     = 7
}

variable "bucket_force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket. Leave false in production."
  type        = bool
  default     = false
}

variable "bucket_access_log_bucket" {
  description = "Bucket receiving S3 server access logs of the cold-tier bucket; null disables access logging."
  type        = string
  default     = null
}

variable "kms_key_arn" {
  description = "KMS key encrypting the bucket and the disks; null creates a dedicated key with rotation."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------
# Shoal

variable "shoal_pip_spec" {
  description = "What the nodes pip install: a pinned release (shoal==0.1.0), a wheel URL or a VCS URL. Changing it affects new instances only; roll it out with the rolling restart in docs/deploy.md."
  type        = string
  default     = "shoal==0.1.0"
}

variable "pip_extra_args" {
  description = "Extra pip arguments, e.g. [\"--index-url\", \"https://pypi.internal/simple\"]."
  type        = list(string)
  default     = []
}

variable "data_dir" {
  description = "Mount point of the data disk and Shoal's data_dir."
  type        = string
  default     = "/var/lib/shoal"
}

variable "tiers" {
  description = "Named retention tiers, written to shoal.yaml: name -> {local_retention_bytes, local_retention_ms, retention_bytes, retention_ms, upload_compression}."
  type        = map(map(string))
  default = {
    default = {
      local_retention_bytes = "1GiB"
      local_retention_ms    = "6h"
      retention_bytes       = "-1"
      retention_ms          = "7d"
    }
  }
}

variable "topic_tiers" {
  description = "Ordered topic-name globs -> tier name; the first match wins."
  type = list(object({
    pattern = string
    tier    = string
  }))
  default = []
}

variable "cloud_storage_settings" {
  description = "Other cloud_storage keys of shoal.yaml: upload_interval, upload_concurrency, upload_bandwidth, chunk_size, cache_dir, cache_size, remote_write_default."
  type        = map(string)
  default     = {}
}

variable "log_settings" {
  description = "The log section of shoal.yaml: segment_bytes, segment_ms, flush, flush_interval."
  type        = map(string)
  default     = {}
}

variable "auto_create_topics" {
  description = "Kafka's auto.create.topics.enable."
  type        = bool
  default     = true
}

variable "default_partitions" {
  description = "Partitions of auto-created topics."
  type        = number
  default     = 1
}

variable "default_replication_factor" {
  description = "Replication factor of auto-created topics and of CreateTopics with -1; written to shoal.yaml capped at node_count."
  type        = number
  default     = 3

  validation {
    condition     = var.default_replication_factor >= 1 && floor(var.default_replication_factor) == var.default_replication_factor
    error_message = "The default_replication_factor must be an integer >= 1."
  }
}

variable "log_level" {
  description = "Broker log level: DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"
}
