# The brokers. Terraform never restarts or replaces a running broker on its own:
# user_data and ami are ignored after creation, so changing the Shoal version or the
# config reaches running nodes only through the rolling restart in docs/deploy.md
# (new or replaced instances always get the current values).

resource "aws_placement_group" "spread" {
  count    = var.use_spread_placement_group ? 1 : 0
  name     = "${var.name}-shoal-spread"
  strategy = "spread"
  tags     = local.tags
}

resource "aws_ebs_volume" "data" {
  #checkov:skip=CKV2_AWS_9:Snapshots of a hot tier are not a backup of a log: what matters is uploaded to the versioned bucket within cloud_storage.upload_interval (docs/deploy.md, backup and recovery).
  count             = var.data_disk == "ebs" ? var.node_count : 0
  availability_zone = local.subnet_zones[local.node_subnet_index[count.index]]
  type              = "gp3"
  size              = var.ebs_data_volume.size_gb
  iops              = var.ebs_data_volume.iops
  throughput        = var.ebs_data_volume.throughput_mibps
  encrypted         = true
  kms_key_id        = local.kms_key_arn
  tags              = merge(local.tags, { Name = "${var.name}-node-${count.index}-data", "shoal:node-id" = tostring(count.index) })
}

resource "aws_instance" "node" {
  count                   = var.node_count
  ami                     = local.ami_id
  instance_type           = var.instance_type
  iam_instance_profile    = aws_iam_instance_profile.node.name
  key_name                = var.key_name
  user_data               = module.node_config[count.index].cloud_init
  ebs_optimized           = true
  monitoring              = true
  disable_api_termination = var.disable_api_termination
  placement_group         = var.use_spread_placement_group ? aws_placement_group.spread[0].id : null

  network_interface {
    network_interface_id = aws_network_interface.node[count.index].id
    device_index         = 0
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size_gb
    encrypted             = true
    kms_key_id            = local.kms_key_arn
    delete_on_termination = true
    tags                  = merge(local.tags, { Name = "${var.name}-node-${count.index}-root" })
  }

  # No volume_tags: they would fight the tags of the attached EBS data volume.
  tags = merge(local.tags, { Name = "${var.name}-node-${count.index}", "shoal:node-id" = tostring(count.index) })

  lifecycle {
    ignore_changes = [ami, user_data]

    precondition {
      condition     = length(distinct(local.subnet_zones)) == length(var.subnet_ids)
      error_message = "Each of subnet_ids must be in a different availability zone, so that the nodes spread over zones."
    }

    precondition {
      condition     = length(distinct(data.aws_subnet.selected[*].vpc_id)) == 1
      error_message = "All subnet_ids must belong to the same VPC."
    }

    precondition {
      condition     = var.data_disk != "instance_store" || data.aws_ec2_instance_type.node.instance_storage_supported
      error_message = "The instance_type has no instance storage: pick one with local NVMe (i4i, m6id, ...) or set data_disk = \"ebs\"."
    }
  }
}

resource "aws_volume_attachment" "data" {
  count                          = var.data_disk == "ebs" ? var.node_count : 0
  device_name                    = "/dev/sdf"
  volume_id                      = aws_ebs_volume.data[count.index].id
  instance_id                    = aws_instance.node[count.index].id
  stop_instance_before_detaching = true
}
