# Shoal on AWS: one cluster of node_count brokers spread over availability zones, each on
# local NVMe (or EBS), sharing one prefix of one encrypted bucket as the cold tier. Every
# node's shoal.yaml and cloud-init come from ../shoal_node_config and the nodes' addresses
# from ../shoal_node_addresses; the test suite applies both offline.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

data "aws_subnet" "selected" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

data "aws_ec2_instance_type" "node" {
  instance_type = var.instance_type
}

data "aws_ami" "ubuntu" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["099720109477"] # Canonical

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-${local.ami_architecture}-server-*"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  tags = merge({ "shoal:cluster" = var.name, "managed-by" = "terraform" }, var.tags)

  vpc_id            = data.aws_subnet.selected[0].vpc_id
  subnet_zones      = data.aws_subnet.selected[*].availability_zone
  node_subnet_index = module.node_addresses.subnet_indexes
  node_addresses    = module.node_addresses.addresses
  ami_architecture  = contains(data.aws_ec2_instance_type.node.supported_architectures, "arm64") ? "arm64" : "amd64"
  ami_id            = var.ami_id != null ? var.ami_id : data.aws_ami.ubuntu[0].id
  bucket_name       = var.bucket_name != null ? var.bucket_name : "${var.name}-${data.aws_caller_identity.current.account_id}-${data.aws_region.current.name}"
  bucket_prefix     = trim(var.bucket_prefix != null ? var.bucket_prefix : var.name, "/")
  kms_key_arn       = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.shoal[0].arn
  # One cluster, one cold tier: every node writes under the same prefix.
  cloud_storage_url = "s3://${local.bucket_name}/${local.bucket_prefix}"
  cluster_ports     = { kafka = var.kafka_port, rpc = var.rpc_port, admin = var.admin_port }
}

# Each node's private IP, fixed from the subnets' CIDR blocks before anything exists, so
# that every node's user data can list all founding nodes as cluster.seeds.
module "node_addresses" {
  source = "../shoal_node_addresses"

  node_count         = var.node_count
  subnet_cidr_blocks = data.aws_subnet.selected[*].cidr_block
  first_host_number  = var.private_ip_first_host_number
  private_ips        = var.private_ips
}

module "node_config" {
  source = "../shoal_node_config"
  count  = var.node_count

  node_id                    = count.index
  node_addresses             = local.node_addresses
  kafka_port                 = var.kafka_port
  admin_port                 = var.admin_port
  rpc_port                   = var.rpc_port
  data_dir                   = var.data_dir
  shoal_pip_spec             = var.shoal_pip_spec
  pip_extra_args             = var.pip_extra_args
  data_disk_mode             = var.data_disk
  ebs_volume_id              = var.data_disk == "ebs" ? aws_ebs_volume.data[count.index].id : ""
  cloud_storage_url          = local.cloud_storage_url
  cloud_storage_region       = data.aws_region.current.name
  cloud_storage_settings     = var.cloud_storage_settings
  tiers                      = var.tiers
  topic_tiers                = var.topic_tiers
  log_settings               = var.log_settings
  auto_create_topics         = var.auto_create_topics
  default_partitions         = var.default_partitions
  default_replication_factor = var.default_replication_factor
  log_level                  = var.log_level
}
