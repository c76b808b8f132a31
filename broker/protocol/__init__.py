"""Sans-io Kafka wire layer: bytes in, frames and kio messages out. No sockets here."""
