// kafkajs admin scenario run by tests/test_admin_kafkajs.py.
// Usage: node admin.js '{"brokers": ["127.0.0.1:9092"], "topic": "t"}'
// Creates a topic (and fails to create it again), describes and alters its configs,
// adds partitions, describes the cluster, deletes the topic; prints one JSON report.
const { Kafka, ConfigResourceTypes, logLevel } = require("kafkajs");

const settings = JSON.parse(process.argv[2]);

async function errorOf(action) {
  try {
    await action();
    return null;
  } catch (error) {
    const cause = (error.errors && error.errors[0]) || error;  // createTopics wraps per-topic errors
    return { type: cause.type || cause.name, message: cause.message };
  }
}

async function topicConfigs(admin, topic) {
  const described = await admin.describeConfigs({
    includeSynonyms: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }] });
  const entries = {};
  for (const entry of described.resources[0].configEntries) {
    entries[entry.configName] = { value: entry.configValue, isDefault: entry.isDefault, source: entry.configSource };
  }
  return entries;
}

async function main() {
  const kafka = new Kafka({ clientId: "shoal-kafkajs-admin", brokers: settings.brokers, logLevel: logLevel.NOTHING,
                            retry: { retries: 2, initialRetryTime: 100 } });
  const admin = kafka.admin();
  await admin.connect();
  const topic = settings.topic;
  const report = {};
  report.created = await admin.createTopics({
    topics: [{ topic, numPartitions: 2, replicationFactor: 1, configEntries: [{ name: "retention.ms", value: "60000" }] }] });
  // kafkajs answers false (not an error) for TOPIC_ALREADY_EXISTS
  report.duplicate = await admin.createTopics({ topics: [{ topic, numPartitions: 2, replicationFactor: 1 }] });
  report.compact = await errorOf(() => admin.createTopics({
    topics: [{ topic: `${topic}-compact`, configEntries: [{ name: "cleanup.policy", value: "compact" }] }] }));
  report.configsBefore = await topicConfigs(admin, topic);
  await admin.alterConfigs({ resources: [{
    type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: "segment.ms", value: "120000" }] }] });
  report.configsAfter = await topicConfigs(admin, topic);
  await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] });
  report.partitions = (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length;
  report.cluster = await admin.describeCluster();
  await admin.deleteTopics({ topics: [topic] });
  report.topicsAfterDelete = await admin.listTopics();
  await admin.disconnect();
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
