"""One module per Kafka API. Each declares API_KEY, MIN_VERSION, MAX_VERSION and
`async def handle(context, request)` returning a kio response object of the request's
version (or NO_RESPONSE for acks=0 produce, or an EncodedResponse for hand-encoded
hot paths). `registry.py` lists them; ApiVersions is built from that list, so what we
advertise and what we serve cannot disagree."""
