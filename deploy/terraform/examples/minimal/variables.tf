variable "region" {
  description = "AWS region to deploy into."
  type        = string
}

variable "name" {
  description = "Cluster name (prefix of every resource and of the bucket)."
  type        = string
  default     = "shoal"
}

variable "subnet_ids" {
  description = "Three private subnets in three availability zones, with outbound HTTPS (NAT gateway or VPC endpoints) so the nodes can install Shoal."
  type        = list(string)
}

variable "kafka_allowed_cidrs" {
  description = "CIDRs of your Kafka clients (e.g. the VPC CIDR)."
  type        = list(string)
}
