// A loss-service client in plain Java: java.net.http's HttpClient with its defaults, no dependencies.
//
//   java examples/java/LossClient.java [URL]    (Java 11+; URL: $LOSS_SERVICE_URL, else http://127.0.0.1:8000)
//
// It evaluates cross entropy on a small batch (POST /v1/evaluate: the value and the gradient of the
// logits) and lists the catalog (GET /v1/losses). With LOSS_SERVICE_API_KEY set, it sends the key as
// a bearer token. The client is HttpClient.newHttpClient(), unconfigured: on plain http it offers an
// upgrade to HTTP/2 (h2c) with its first request, which the service declines by answering over HTTP/1.1.

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class LossClient {

    public static void main(String[] args) throws Exception {
        String base = args.length > 0 ? args[0] : System.getenv().getOrDefault("LOSS_SERVICE_URL", "http://127.0.0.1:8000");
        base = base.replaceAll("/+$", "");
        HttpClient client = HttpClient.newHttpClient();

        // Logits for a batch of 4 samples over 3 classes, and each sample's class index.
        String request = "{\"loss\": {\"name\": \"cross_entropy\", \"params\": {\"label_smoothing\": 0.1}},"
                + " \"inputs\": {\"input\": [[2.0, 0.5, -1.0], [0.1, 0.2, 3.0], [1.2, -0.3, 0.4], [0.0, 1.0, 0.0]],"
                + " \"target\": [0, 2, 1, 1]}, \"return_grad\": [\"input\"]}";
        System.out.println("request: " + request);
        HttpResponse<String> evaluated = send(client, builder(base + "/v1/evaluate")
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(request))
                .build());
        Map<String, Object> result = object(Json.parse(evaluated.body()));
        System.out.println("loss: " + result.get("loss") + ", reduction: " + result.get("reduction"));
        System.out.println("value: " + number(result.get("value")));
        Map<String, Object> grad = object(object(result.get("grad")).get("input"));
        List<Double> values = new ArrayList<>();
        for (Object v : list(grad.get("data"))) {
            values.add(number(v));
        }
        List<Integer> shape = new ArrayList<>();
        for (Object n : list(grad.get("shape"))) {
            shape.add((int) number(n));
        }
        System.out.println("grad[input] shape " + shape + " " + grad.get("dtype") + ": " + values);

        HttpResponse<String> listed = send(client, builder(base + "/v1/losses").GET().build());
        List<String> names = new ArrayList<>();
        for (Object loss : list(object(Json.parse(listed.body())).get("losses"))) {
            names.add((String) object(loss).get("name"));
        }
        System.out.println("losses (" + names.size() + "): " + String.join(", ", names));
    }

    static HttpRequest.Builder builder(String url) {
        HttpRequest.Builder builder = HttpRequest.newBuilder(URI.create(url));
        String key = System.getenv("LOSS_SERVICE_API_KEY");
        if (key != null && !key.isEmpty()) {
            builder.header("Authorization", "Bearer " + key);
        }
        return builder;
    }

    /** Sends a request; prints what was asked and the protocol it was answered in; exits on an error. */
    static HttpResponse<String> send(HttpClient client, HttpRequest request) throws Exception {
        HttpResponse<String> response = client.send(request, HttpResponse.BodyHandlers.ofString());
        System.out.println(request.method() + " " + request.uri().getPath() + ": " + response.statusCode()
                + " over " + response.version());
        if (response.statusCode() != 200) {
            // Every error is application/problem+json: {"type", "title", "status", "detail", "errors"}.
            Object detail = response.headers().firstValue("Content-Type").orElse("").startsWith("application/problem+json")
                    ? object(Json.parse(response.body())).get("detail") : response.body();
            System.err.println("error: " + detail);
            System.exit(1);
        }
        return response;
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> object(Object value) {
        return (Map<String, Object>) value;
    }

    @SuppressWarnings("unchecked")
    static List<Object> list(Object value) {
        return (List<Object>) value;
    }

    /** A JSON number, or one of the strings "NaN", "Infinity", "-Infinity" that the service writes for them. */
    static double number(Object value) {
        return value instanceof String ? Double.parseDouble((String) value) : (Double) value;
    }

    /** A small JSON reader (objects, arrays, strings, numbers as Double, true, false, null): enough for the answers. */
    static final class Json {
        private final String text;
        private int at;

        private Json(String text) {
            this.text = text;
        }

        static Object parse(String text) {
            Json json = new Json(text);
            Object value = json.value();
            json.space();
            if (json.at != text.length()) {
                throw json.error("unexpected text after the value");
            }
            return value;
        }

        private Object value() {
            space();
            if (at >= text.length()) {
                throw error("unexpected end");
            }
            char c = text.charAt(at);
            switch (c) {
                case '{':
                    return object();
                case '[':
                    return array();
                case '"':
                    return string();
                case 't':
                    return word("true", Boolean.TRUE);
                case 'f':
                    return word("false", Boolean.FALSE);
                case 'n':
                    return word("null", null);
                default:
                    return number();
            }
        }

        private Map<String, Object> object() {
            Map<String, Object> map = new LinkedHashMap<>();
            at++;
            space();
            if (text.charAt(at) == '}') {
                at++;
                return map;
            }
            while (true) {
                space();
                String key = string();
                space();
                expect(':');
                map.put(key, value());
                space();
                if (text.charAt(at) == ',') {
                    at++;
                } else {
                    expect('}');
                    return map;
                }
            }
        }

        private List<Object> array() {
            List<Object> items = new ArrayList<>();
            at++;
            space();
            if (text.charAt(at) == ']') {
                at++;
                return items;
            }
            while (true) {
                items.add(value());
                space();
                if (text.charAt(at) == ',') {
                    at++;
                } else {
                    expect(']');
                    return items;
                }
            }
        }

        private String string() {
            expect('"');
            StringBuilder out = new StringBuilder();
            while (true) {
                char c = text.charAt(at++);
                if (c == '"') {
                    return out.toString();
                }
                if (c != '\\') {
                    out.append(c);
                    continue;
                }
                char e = text.charAt(at++);
                switch (e) {
                    case 'b': out.append('\b'); break;
                    case 'f': out.append('\f'); break;
                    case 'n': out.append('\n'); break;
                    case 'r': out.append('\r'); break;
                    case 't': out.append('\t'); break;
                    case 'u':
                        out.append((char) Integer.parseInt(text.substring(at, at + 4), 16));
                        at += 4;
                        break;
                    default: out.append(e); // \" \\ \/
                }
            }
        }

        private Double number() {
            int start = at;
            while (at < text.length() && "+-0123456789.eE".indexOf(text.charAt(at)) >= 0) {
                at++;
            }
            if (start == at) {
                throw error("unexpected character");
            }
            return Double.parseDouble(text.substring(start, at));
        }

        private Object word(String word, Object value) {
            if (!text.startsWith(word, at)) {
                throw error("unexpected character");
            }
            at += word.length();
            return value;
        }

        private void expect(char c) {
            if (at >= text.length() || text.charAt(at) != c) {
                throw error("expected '" + c + "'");
            }
            at++;
        }

        private void space() {
            while (at < text.length() && Character.isWhitespace(text.charAt(at))) {
                at++;
            }
        }

        private IllegalArgumentException error(String what) {
            return new IllegalArgumentException("invalid JSON at " + at + ": " + what);
        }
    }
}
