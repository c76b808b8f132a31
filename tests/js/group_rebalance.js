// kafkajs scenario run by tests/test_clients_matrix.py.
// Usage: node group_rebalance.js '{"brokers": ["127.0.0.1:9092"], "topic": "t", "partitions": 4, "count": 40}'
// Two consumers of one group (kafkajs' round-robin assigner): the first alone owns every
// partition; when the second joins they split them; messages produced then are read once,
// each by the owner of its partition; when the second leaves the first owns them all again.
// Prints one JSON report on stdout: the assignments after each step and what each read.
const { Kafka, logLevel } = require("kafkajs");

const settings = JSON.parse(process.argv[2]);
const STEP_TIMEOUT_MS = 30000;

function owned(assignment) {
  return (assignment[settings.topic] || []).slice().sort((a, b) => a - b);
}

function waitFor(condition, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const timer = setInterval(() => {
      if (condition()) { clearInterval(timer); resolve(); }
      else if (Date.now() - started > STEP_TIMEOUT_MS) {
        clearInterval(timer);
        reject(new Error(`timed out: ${what()}`));
      }
    }, 50);
  });
}

async function startMember(kafka, name) {
  const member = { name, owned: [], joins: 0, read: [] };
  member.consumer = kafka.consumer({ groupId: settings.group, sessionTimeout: 6000, rebalanceTimeout: 10000,
                                     heartbeatInterval: 300, maxWaitTimeInMs: 100 });
  member.consumer.on(member.consumer.events.GROUP_JOIN, ({ payload }) => {
    member.owned = owned(payload.memberAssignment);
    member.joins += 1;
  });
  await member.consumer.connect();
  await member.consumer.subscribe({ topic: settings.topic, fromBeginning: true });
  await member.consumer.run({
    eachMessage: async ({ partition, message }) => {
      member.read.push({ partition, offset: Number(message.offset), value: message.value.toString() });
    },
  });
  return member;
}

function split(first, second) {
  const all = [...first.owned, ...second.owned].sort((a, b) => a - b);
  return first.owned.length > 0 && second.owned.length > 0 && all.length === settings.partitions &&
    all.every((partition, index) => partition === index);
}

async function main() {
  const kafka = new Kafka({ clientId: "shoal-kafkajs-group", brokers: settings.brokers, logLevel: logLevel.ERROR,
                            retry: { retries: 5, initialRetryTime: 100 } });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: settings.topic, numPartitions: settings.partitions }] });
  await admin.disconnect();

  const report = { steps: [] };
  const first = await startMember(kafka, "first");
  await waitFor(() => first.owned.length === settings.partitions, () => `first alone owns ${first.owned}`);
  report.steps.push({ first: first.owned });

  const second = await startMember(kafka, "second");
  await waitFor(() => split(first, second), () => `first ${first.owned}, second ${second.owned}`);
  report.steps.push({ first: first.owned, second: second.owned });

  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let index = 0; index < settings.count; index++) {
    messages.push({ partition: index % settings.partitions, value: `value-${index}` });
  }
  await producer.send({ topic: settings.topic, acks: -1, messages });
  await producer.disconnect();
  await waitFor(() => first.read.length + second.read.length >= settings.count,
                () => `read ${first.read.length} + ${second.read.length}`);
  report.first = { owned: first.owned, read: first.read };
  report.second = { owned: second.owned, read: second.read };

  await second.consumer.disconnect();  // LeaveGroup
  await waitFor(() => first.owned.length === settings.partitions, () => `first after second left owns ${first.owned}`);
  report.steps.push({ first: first.owned });
  await first.consumer.disconnect();
  console.log(JSON.stringify(report));
}

main().then(() => process.exit(0), (error) => { console.error(error && error.stack || error); process.exit(1); });
