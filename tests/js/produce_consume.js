// kafkajs scenario run by tests/test_clients_kafkajs.py.
// Usage: node produce_consume.js '{"brokers": ["127.0.0.1:9092"], "topic": "t", "count": 50, "codec": "gzip"}'
// Produces `count` messages (keys, headers, null values) with an idempotent producer,
// reads offsets (latest, earliest, by timestamp) with the admin client, consumes
// everything back with a consumer group, and prints one JSON report on stdout.
const { Kafka, CompressionTypes, logLevel } = require("kafkajs");

const settings = JSON.parse(process.argv[2]);
const BASE_TIMESTAMP_MS = 1700000000000;

function expectedMessages(count) {
  const messages = [];
  for (let index = 0; index < count; index++) {
    messages.push({
      key: index % 7 === 3 ? null : `key-${index}`,
      value: index % 5 === 2 ? null : `value-${index}-`.repeat((index % 9) + 1),
      headers: index % 2 ? { trace: `t${index}`, empty: "" } : {},
      timestamp: String(BASE_TIMESTAMP_MS + index),
    });
  }
  return messages;
}

async function main() {
  const kafka = new Kafka({ clientId: "shoal-kafkajs-test", brokers: settings.brokers, logLevel: logLevel.ERROR,
                            retry: { retries: 5, initialRetryTime: 100 } });
  const codec = settings.codec === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None;
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const messages = expectedMessages(settings.count);
  const half = Math.floor(messages.length / 2);
  const acknowledged = [];
  for (const part of [messages.slice(0, half), messages.slice(half)]) {
    const metadata = await producer.send({ topic: settings.topic, acks: -1, compression: codec, messages: part });
    acknowledged.push(Number(metadata[0].baseOffset));
  }
  await producer.disconnect();

  const admin = kafka.admin();
  await admin.connect();
  const latest = await admin.fetchTopicOffsets(settings.topic);
  const byTime = await admin.fetchTopicOffsetsByTimestamp(settings.topic, BASE_TIMESTAMP_MS + 5);
  await admin.disconnect();

  const consumer = kafka.consumer({ groupId: `kafkajs-${settings.topic}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic: settings.topic, fromBeginning: true });
  const received = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${received.length} messages consumed`)), 40000);
    consumer.run({
      eachMessage: async ({ message }) => {
        const headers = {};
        for (const [name, value] of Object.entries(message.headers || {})) headers[name] = value.toString();
        received.push({
          offset: Number(message.offset),
          key: message.key === null ? null : message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          headers,
          timestamp: message.timestamp,
        });
        if (received.length >= settings.count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  const expected = messages.map((message) => ({ key: message.key, value: message.value, headers: message.headers,
                                                timestamp: message.timestamp }));
  console.log(JSON.stringify({ acknowledged, latest, byTime, received, expected }));
}

main().then(() => process.exit(0), (error) => { console.error(error && error.stack || error); process.exit(1); });
