import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * A consumer in a group resumes from its committed offset (which carries a leader epoch)
 * and reads COUNT records; the client validates that position with OffsetForLeaderEpoch
 * first when the partition's epoch has changed (KIP-320). Prints one JSON object on
 * stdout: {"records": [[offset, leader epoch], ...]}; tests/test_clients_leader_epoch.py
 * runs it as a single-file program (java -cp JARS ShoalLeaderEpochCheck.java ...).
 *
 * Usage: ShoalLeaderEpochCheck BOOTSTRAP TOPIC GROUP COUNT
 */
public final class ShoalLeaderEpochCheck {
    private static final Duration CONSUME_DEADLINE = Duration.ofSeconds(30);

    private ShoalLeaderEpochCheck() {
    }

    public static void main(String[] arguments) {
        String bootstrap = arguments[0];
        String topic = arguments[1];
        String group = arguments[2];
        int count = Integer.parseInt(arguments[3]);

        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        List<String> records = new ArrayList<>();
        long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(config)) {
            consumer.subscribe(List.of(topic));
            while (records.size() < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(500))) {
                    records.add("[" + record.offset() + "," + record.leaderEpoch().orElse(-1) + "]");
                }
            }
        }
        System.out.println("{\"records\": [" + String.join(",", records) + "]}");
    }
}
