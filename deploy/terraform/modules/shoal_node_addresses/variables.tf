variable "node_count" {
  description = "Number of founding nodes; node ids are 0..node_count-1."
  type        = number

  validation {
    condition     = var.node_count >= 1 && floor(var.node_count) == var.node_count
    error_message = "The node_count must be an integer >= 1."
  }
}

variable "subnet_cidr_blocks" {
  description = "IPv4 CIDR block of each subnet, in the order of the cluster's subnet_ids; node i goes to subnet i % length(subnet_cidr_blocks)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_cidr_blocks) >= 1 && alltrue([for cidr in var.subnet_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "Give at least one subnet CIDR block, each an IPv4 CIDR like 10.0.1.0/24."
  }
}

variable "first_host_number" {
  description = "Host number (within its subnet) of the first node in each subnet; the next node in the same subnet gets the next number. AWS reserves host numbers 0-3 of every subnet."
  type        = number
  default     = 10

  validation {
    condition     = var.first_host_number >= 4 && floor(var.first_host_number) == var.first_host_number
    error_message = "The first_host_number must be an integer >= 4 (AWS reserves the first four addresses of a subnet)."
  }
}

variable "private_ips" {
  description = "Explicit address of each node, indexed by node id, each inside its node's subnet; null derives them from first_host_number."
  type        = list(string)
  default     = null

  validation {
    condition     = var.private_ips == null ? true : alltrue([for ip in var.private_ips : can(cidrhost("${ip}/32", 0))])
    error_message = "Each private_ips entry must be an IPv4 address."
  }
}
