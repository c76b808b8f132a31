# One security group for the brokers: Kafka from the allowed CIDRs and security groups and
# between the nodes (replicas fetch from the leader's Kafka listener); RPC (Raft) only
# between the nodes; admin between the nodes and from the given monitoring groups.
# Each node gets a network interface with a fixed private IP (../shoal_node_addresses),
# created ahead of its instance: its seed address and advertised address are known at
# plan time and survive instance replacement.

resource "aws_security_group" "node" {
  name_prefix = "${var.name}-node-"
  description = "Shoal brokers of cluster ${var.name}"
  vpc_id      = local.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-node" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "between_nodes" {
  for_each                     = local.cluster_ports
  security_group_id            = aws_security_group.node.id
  description                  = "Shoal ${each.key} traffic between nodes"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "between_nodes" {
  for_each                     = local.cluster_ports
  security_group_id            = aws_security_group.node.id
  description                  = "Shoal ${each.key} traffic between nodes"
  referenced_security_group_id = aws_security_group.node.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_cidr" {
  for_each          = toset(var.kafka_allowed_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "Kafka clients in ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_group" {
  for_each                     = toset(var.kafka_allowed_security_group_ids)
  security_group_id            = aws_security_group.node.id
  description                  = "Kafka clients in ${each.value}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.kafka_port
  to_port                      = var.kafka_port
  tags                         = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "admin_from_group" {
  for_each                     = toset(var.admin_allowed_security_group_ids)
  security_group_id            = aws_security_group.node.id
  description                  = "Admin API (readiness, metrics) from ${each.value}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.admin_port
  to_port                      = var.admin_port
  tags                         = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.node.id
  description       = "HTTPS: S3, KMS, SSM and PyPI (or your mirror)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "http" {
  count             = var.allow_http_egress ? 1 : 0
  security_group_id = aws_security_group.node.id
  description       = "HTTP: operating system package mirrors"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  tags              = local.tags
}

resource "aws_network_interface" "node" {
  count           = var.node_count
  description     = "Shoal ${var.name} node ${count.index}"
  subnet_id       = var.subnet_ids[local.node_subnet_index[count.index]]
  private_ips     = [local.node_addresses[count.index]]
  security_groups = [aws_security_group.node.id]
  tags            = merge(local.tags, { Name = "${var.name}-node-${count.index}", "shoal:node-id" = tostring(count.index) })

  lifecycle {
    precondition {
      condition     = length(local.node_addresses) == var.node_count && length(distinct(local.node_addresses)) == var.node_count
      error_message = "The private_ips list must give node_count distinct addresses, one per node id."
    }
  }
}
