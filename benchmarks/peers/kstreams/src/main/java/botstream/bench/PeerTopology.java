package botstream.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams peer of `make bench`: the simplified job every peer does.
 *
 * <p>For each widget event: parse the JSON; fold it into its conversation's state (a RocksDB
 * store keyed by conversation id, with a changelog); publish one outcome-like record keyed by
 * conversation id; re-key by account and count events per account (a second store with a
 * changelog, published to the counts topic). A record that is not a JSON object with string
 * ids gets an error record instead, and no count. Exactly-once v2, one stream thread unless
 * told otherwise.
 *
 * <p>Arguments: bootstrap application-id input-topic outcomes-topic counts-topic state-dir
 * commit-interval-ms stream-threads.
 */
public final class PeerTopology {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final byte[] EMPTY = new byte[0];
  private static final String STORE = "conversations";

  private PeerTopology() {}

  /** What the conversation step hands on: the account (null for a bad record) and the outcome. */
  record Outcome(String account, byte[] json) {}

  /** Folds an event into its conversation's state and emits the outcome-like record. */
  static final class ConversationProcessor implements Processor<String, byte[], String, Outcome> {
    private ProcessorContext<String, Outcome> context;
    private KeyValueStore<String, byte[]> store;

    @Override
    public void init(ProcessorContext<String, Outcome> context) {
      this.context = context;
      this.store = context.getStateStore(STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
      JsonNode event = parse(record.value());
      JsonNode conversation = event == null ? null : event.get("conversation_id");
      JsonNode account = event == null ? null : event.get("account_id");
      if (conversation == null || !conversation.isTextual() || account == null
          || !account.isTextual()) {
        ObjectNode error = JSON.createObjectNode();
        error.put("error", "invalid event");
        error.put("offset", context.recordMetadata().map(m -> m.offset()).orElse(-1L));
        context.forward(record.withValue(new Outcome(null, write(error))));
        return;
      }
      String id = conversation.textValue();
      String type = text(event, "type");
      String at = text(event, "occurred_at");
      byte[] previous = store.get(id);
      ObjectNode state = previous == null ? JSON.createObjectNode() : (ObjectNode) parse(previous);
      if (previous == null) {
        state.put("account_id", account.textValue());
        state.put("events", 0);
        state.put("clicks", 0);
        state.put("started_at", at);
        state.put("last_at", at);
      }
      state.put("events", state.get("events").intValue() + 1);
      if ("chatbot.button_clicked".equals(type)) {
        state.put("clicks", state.get("clicks").intValue() + 1);
      }
      if (at != null && at.compareTo(state.get("last_at").asText()) > 0) {
        state.put("last_at", at);
      }
      state.put("last_type", type);
      byte[] encoded = write(state);
      store.put(id, encoded);
      ObjectNode outcome = state.deepCopy();
      outcome.put("conversation_id", id);
      outcome.put("ended", "conversation.closed".equals(type) || "visitor.left".equals(type));
      context.forward(
          new Record<>(id, new Outcome(account.textValue(), write(outcome)), record.timestamp()));
    }
  }

  static JsonNode parse(byte[] value) {
    if (value == null) {
      return null;
    }
    try {
      JsonNode node = JSON.readTree(value);
      return node != null && node.isObject() ? node : null;
    } catch (IOException e) {
      return null;
    }
  }

  static byte[] write(JsonNode node) {
    try {
      return JSON.writeValueAsBytes(node);
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  static String text(JsonNode node, String field) {
    JsonNode value = node.get(field);
    return value != null && value.isTextual() ? value.textValue() : null;
  }

  public static void main(String[] args) throws InterruptedException {
    if (args.length != 8) {
      System.err.println(
          "usage: PeerTopology BOOTSTRAP APP_ID INPUT OUTCOMES COUNTS STATE_DIR COMMIT_MS THREADS");
      System.exit(2);
    }
    String input = args[2];
    String outcomes = args[3];
    String counts = args[4];

    Properties props = new Properties();
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args[5]);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, args[6]);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, args[7]);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");

    StreamsBuilder builder = new StreamsBuilder();
    builder.addStateStore(
        Stores.keyValueStoreBuilder(
            Stores.persistentKeyValueStore(STORE), Serdes.String(), Serdes.ByteArray()));
    KStream<String, Outcome> results =
        builder.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
            .process(ConversationProcessor::new, STORE);
    results.mapValues(Outcome::json).to(outcomes, Produced.with(Serdes.String(), Serdes.ByteArray()));
    results
        .filter((key, outcome) -> outcome.account() != null)
        .map((key, outcome) -> KeyValue.pair(outcome.account(), EMPTY))
        .groupByKey(Grouped.with("by-account", Serdes.String(), Serdes.ByteArray()))
        .count(Materialized.as("account-counts"))
        .toStream()
        .mapValues(count -> Long.toString(count).getBytes(StandardCharsets.UTF_8))
        .to(counts, Produced.with(Serdes.String(), Serdes.ByteArray()));

    KafkaStreams streams = new KafkaStreams(builder.build(), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      stopped.countDown();
    }));
    streams.setUncaughtExceptionHandler(error -> {
      error.printStackTrace();
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
          .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    streams.start();
    stopped.await();
  }
}
