import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

/**
 * Drives a broker with the Apache Kafka Java client the way an application would:
 * AdminClient creates a topic, an idempotent producer (acks=all, zstd) sends keyed
 * messages with headers, a consumer in a group reads them back and commits, and the
 * committed offsets are read back through AdminClient. Prints one JSON object on stdout;
 * tests/test_clients_java.py checks it against the messages it expects.
 *
 * Usage: ShoalJavaClientCheck BOOTSTRAP TOPIC PARTITIONS COUNT GROUP
 *
 * Message i: key "key-i" (null when i % 10 == 9), value "value-i-" followed by i % 50
 * letters (null when i % 17 == 16), headers index=i, client=java and, when i % 5 == 0,
 * "empty" with a null value.
 */
public final class ShoalJavaClientCheck {
    private static final Duration CONSUME_DEADLINE = Duration.ofSeconds(60);
    private static final long ADMIN_TIMEOUT_SECONDS = 30;

    private ShoalJavaClientCheck() {
    }

    public static void main(String[] arguments) throws Exception {
        String bootstrap = arguments[0];
        String topic = arguments[1];
        int partitions = Integer.parseInt(arguments[2]);
        int count = Integer.parseInt(arguments[3]);
        String group = arguments[4];

        StringBuilder json = new StringBuilder("{");
        field(json, "client_version", quote(AppInfoParser.getVersion())).append(',');
        try (Admin admin = Admin.create(adminConfig(bootstrap))) {
            int described = createTopic(admin, topic, partitions);
            field(json, "described_partitions", Integer.toString(described)).append(',');
            List<RecordMetadata> acknowledged = produce(bootstrap, topic, count);
            field(json, "acknowledged", acknowledgedJson(acknowledged)).append(',');
            List<ConsumerRecord<byte[], byte[]>> consumed = consumeAndCommit(bootstrap, topic, count, group);
            field(json, "consumed", consumedJson(consumed)).append(',');
            field(json, "committed", committedJson(admin, group));
        }
        json.append('}');
        System.out.println(json);
    }

    private static Properties adminConfig(String bootstrap) {
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        return config;
    }

    private static int createTopic(Admin admin, String topic, int partitions) throws Exception {
        NewTopic newTopic = new NewTopic(topic, partitions, (short) 1);
        admin.createTopics(Collections.singleton(newTopic)).all().get(ADMIN_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        Map<String, TopicDescription> descriptions = admin.describeTopics(Collections.singleton(topic))
                .allTopicNames().get(ADMIN_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        return descriptions.get(topic).partitions().size();
    }

    static byte[] keyOf(int index) {
        return index % 10 == 9 ? null : ("key-" + index).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] valueOf(int index) {
        if (index % 17 == 16) {
            return null;
        }
        StringBuilder value = new StringBuilder("value-").append(index).append('-');
        for (int letter = 0; letter < index % 50; letter++) {
            value.append((char) ('a' + letter % 26));
        }
        return value.toString().getBytes(StandardCharsets.UTF_8);
    }

    static RecordHeaders headersOf(int index) {
        RecordHeaders headers = new RecordHeaders();
        headers.add("index", Integer.toString(index).getBytes(StandardCharsets.UTF_8));
        headers.add("client", "java".getBytes(StandardCharsets.UTF_8));
        if (index % 5 == 0) {
            headers.add("empty", null);
        }
        return headers;
    }

    private static List<RecordMetadata> produce(String bootstrap, String topic, int count) throws Exception {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "zstd");
        config.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60000);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        List<Future<RecordMetadata>> pending = new ArrayList<>();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(config)) {
            for (int index = 0; index < count; index++) {
                pending.add(producer.send(new ProducerRecord<>(
                        topic, null, null, keyOf(index), valueOf(index), headersOf(index))));
            }
            producer.flush();
            List<RecordMetadata> acknowledged = new ArrayList<>();
            for (Future<RecordMetadata> future : pending) {
                acknowledged.add(future.get(ADMIN_TIMEOUT_SECONDS, TimeUnit.SECONDS));
            }
            return acknowledged;
        }
    }

    private static List<ConsumerRecord<byte[], byte[]>> consumeAndCommit(
            String bootstrap, String topic, int count, String group) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        List<ConsumerRecord<byte[], byte[]>> consumed = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config)) {
            consumer.subscribe(Collections.singleton(topic));
            long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
            while (consumed.size() < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                    consumed.add(record);
                }
            }
            consumer.commitSync(Duration.ofSeconds(ADMIN_TIMEOUT_SECONDS));
        }
        return consumed;
    }

    private static String acknowledgedJson(List<RecordMetadata> acknowledged) {
        StringBuilder json = new StringBuilder("[");
        for (RecordMetadata metadata : acknowledged) {
            if (json.length() > 1) {
                json.append(',');
            }
            json.append('[').append(metadata.partition()).append(',').append(metadata.offset()).append(']');
        }
        return json.append(']').toString();
    }

    private static String consumedJson(List<ConsumerRecord<byte[], byte[]>> consumed) {
        StringBuilder json = new StringBuilder("[");
        for (ConsumerRecord<byte[], byte[]> record : consumed) {
            if (json.length() > 1) {
                json.append(',');
            }
            json.append('{');
            field(json, "partition", Integer.toString(record.partition())).append(',');
            field(json, "offset", Long.toString(record.offset())).append(',');
            field(json, "key", quoteBytes(record.key())).append(',');
            field(json, "value", quoteBytes(record.value())).append(',');
            field(json, "headers", headersJson(record)).append('}');
        }
        return json.append(']').toString();
    }

    private static String headersJson(ConsumerRecord<byte[], byte[]> record) {
        StringBuilder json = new StringBuilder("[");
        for (Header header : record.headers()) {
            if (json.length() > 1) {
                json.append(',');
            }
            json.append('[').append(quote(header.key())).append(',').append(quoteBytes(header.value())).append(']');
        }
        return json.append(']').toString();
    }

    private static String committedJson(Admin admin, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                .partitionsToOffsetAndMetadata().get(ADMIN_TIMEOUT_SECONDS, TimeUnit.SECONDS);
        Map<Integer, Long> byPartition = new TreeMap<>();
        committed.forEach((partition, offset) -> byPartition.put(partition.partition(), offset.offset()));
        StringBuilder json = new StringBuilder("{");
        byPartition.forEach((partition, offset) -> {
            if (json.length() > 1) {
                json.append(',');
            }
            json.append(quote(Integer.toString(partition))).append(':').append(offset);
        });
        return json.append('}').toString();
    }

    private static StringBuilder field(StringBuilder json, String name, String rawValue) {
        return json.append(quote(name)).append(':').append(rawValue);
    }

    private static String quoteBytes(byte[] bytes) {
        return bytes == null ? "null" : quote(new String(bytes, StandardCharsets.UTF_8));
    }

    private static String quote(String text) {
        StringBuilder quoted = new StringBuilder("\"");
        for (char character : text.toCharArray()) {
            if (character == '"' || character == '\\') {
                quoted.append('\\').append(character);
            } else if (character < 0x20) {
                quoted.append(String.format("\\u%04x", (int) character));
            } else {
                quoted.append(character);
            }
        }
        return quoted.append('"').toString();
    }
}
