// Starts DynamoDB Local bound to 127.0.0.1 only.
//
// DynamoDB Local has no bind-address option: it listens on every interface. This launcher
// builds the server from the usual command line, sets the host of each Jetty connector to
// 127.0.0.1 before start, and refuses to start if it cannot (a private field name of
// DynamoDB Local 3.3.0, `server`, is relied on; it fails loudly if that changes).
//
// Build:  javac -cp "$D/DynamoDBLocal.jar:$D/DynamoDBLocal_lib/*" -d OUT LoopbackDynamoDBLocal.java
// Run:    java -Djava.library.path=$D/DynamoDBLocal_lib -cp "$D/DynamoDBLocal.jar:$D/DynamoDBLocal_lib/*:OUT" \
//              LoopbackDynamoDBLocal -inMemory -port PORT -disableTelemetry
import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

public class LoopbackDynamoDBLocal {
    public static void main(String[] args) throws Exception {
        DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
        Field f = DynamoDBProxyServer.class.getDeclaredField("server");
        f.setAccessible(true);
        int n = 0;
        for (Connector c : ((Server) f.get(proxy)).getConnectors()) {
            if (c instanceof ServerConnector sc) {
                sc.setHost("127.0.0.1");
                n++;
            }
        }
        if (n == 0) {
            throw new IllegalStateException("no Jetty connector found; refusing to bind all interfaces");
        }
        proxy.start();
    }
}
