output "bootstrap_servers" {
  description = "Comma-separated host:port list for Kafka clients (bootstrap.servers)."
  value       = join(",", module.node_config[*].kafka_address)
}

output "kafka_addresses" {
  description = "host:port of each node's Kafka API, indexed by node id."
  value       = module.node_config[*].kafka_address
}

output "admin_urls" {
  description = "Admin HTTP base URL of each node (GET <url>/v1/status/ready, <url>/metrics)."
  value       = module.node_config[*].admin_url
}

output "bucket_name" {
  description = "The cold-tier bucket."
  value       = aws_s3_bucket.cold_tier.id
}

output "bucket_arn" {
  description = "ARN of the cold-tier bucket."
  value       = aws_s3_bucket.cold_tier.arn
}

output "cloud_storage_url" {
  description = "The cluster's cold tier, cloud_storage.url of every node (s3://BUCKET/PREFIX)."
  value       = local.cloud_storage_url
}

output "cluster_seeds" {
  description = "cluster.seeds of every node: the rpc address (private IP:rpc_port) of each founding node, indexed by node id."
  value       = module.node_config[0].cluster_seeds
}

output "kms_key_arn" {
  description = "KMS key encrypting the bucket and the disks."
  value       = local.kms_key_arn
}

output "instance_ids" {
  description = "EC2 instance id of each node, indexed by node id."
  value       = aws_instance.node[*].id
}

output "private_ips" {
  description = "Private IP of each node, indexed by node id (fixed: known at plan time)."
  value       = local.node_addresses
}

output "availability_zones" {
  description = "Availability zone of each node, indexed by node id."
  value       = [for node_id in range(var.node_count) : local.subnet_zones[local.node_subnet_index[node_id]]]
}

output "security_group_id" {
  description = "Security group of the brokers."
  value       = aws_security_group.node.id
}

output "iam_role_name" {
  description = "IAM role of the brokers."
  value       = aws_iam_role.node.name
}

output "shoal_yaml" {
  description = "Rendered shoal.yaml of each node, indexed by node id (what cloud-init writes to /etc/shoal/shoal.yaml)."
  value       = module.node_config[*].shoal_yaml
}
