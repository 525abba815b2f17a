// Starts Amazon DynamoDB Local bound to one address (forum-local passes 127.0.0.1).
//
// DynamoDB Local has no option for the address it listens on: its Jetty server binds every
// interface, so anyone on the network could read and write a developer's tables. This
// launcher builds the server exactly as `java -jar DynamoDBLocal.jar` does (same arguments),
// sets the host of its connectors, then starts it.
//
// Usage: java -cp <this>:DynamoDBLocal.jar:DynamoDBLocal_lib/* ForumLocalDynamoDb <host> <DynamoDB Local arguments...>

import java.lang.reflect.Field;
import java.util.Arrays;

public final class ForumLocalDynamoDb {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: ForumLocalDynamoDb <host> [DynamoDB Local arguments]");
            System.exit(2);
        }
        String host = args[0];
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
        Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class).invoke(null, (Object) rest);
        Field field = proxy.getClass().getDeclaredField("server");
        field.setAccessible(true);
        Object server = field.get(proxy);
        Object[] connectors = (Object[]) server.getClass().getMethod("getConnectors").invoke(server);
        if (connectors.length == 0) {
            throw new IllegalStateException("DynamoDB Local's server has no connector to bind");
        }
        for (Object connector : connectors) {
            connector.getClass().getMethod("setHost", String.class).invoke(connector, host);
        }
        proxy.getClass().getMethod("start").invoke(proxy);
    }
}
