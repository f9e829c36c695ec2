// A JVM compiler pre-started in a warm sandbox (see tvm_agent/warm.py).
//
// Started by warm_serve.py as `java OPTS TvmWarm.java MAIN N MAIN_ARGS... -- PREFIX...`
// where PREFIX is the argv the compiler's own launcher would have run java
// (or javac) with. It loads the compiler and compiles a throw-away program
// in a scratch directory (classes loaded, hot code compiled), tells the
// agent it is ready (fd 5), then waits for the one request of its sandbox
// (fd 3, written by shim.sh): if the request's argv starts with PREFIX and
// its directory is ours, the compiler's own main() runs on the rest, exactly
// as the CLI runs it, exit code and all; else it answers "cold" (fd 4) and
// the shim runs the real command.
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

public class TvmWarm {
    public static void main(String[] argv) throws Throwable {
        String main = argv[0];
        int n = Integer.parseInt(argv[1]);
        List<String> mainArgs = Arrays.asList(argv).subList(2, 2 + n);
        List<String> prefix = Arrays.asList(argv).subList(3 + n, argv.length);
        Tool tool = Tool.of(main, mainArgs);
        Path scratch = Files.createTempDirectory("tvm-warm");
        try {
            tool.warmUp(scratch);
        } finally {
            try (Stream<Path> walk = Files.walk(scratch)) {
                walk.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
        System.gc(); // what the warm-up left is garbage: hold less while waiting
        say('\n');
        List<String> request = readRequest(new FileInputStream("/proc/self/fd/3"));
        if (request == null) {
            System.exit(0); // discarded: the stage will not come
        }
        String cwd = request.get(1);
        List<String> args = request.subList(2, request.size());
        boolean same = cwd.equals(System.getProperty("user.dir"))
                && args.size() >= prefix.size() - 1
                && args.subList(0, prefix.size() - 1).equals(prefix.subList(1, prefix.size()))
                && request.get(0).equals(prefix.get(0));
        List<String> rest = same ? args.subList(prefix.size() - 1, args.size()) : List.of();
        if (!same || !tool.accepts(rest)) {
            try (OutputStream reply = new FileOutputStream("/proc/self/fd/4")) {
                reply.write("cold\n".getBytes(StandardCharsets.US_ASCII));
            }
            System.exit(0);
        }
        say('s'); // served: the agent reports the stage as warm
        tool.run(rest.toArray(new String[0]));
        System.exit(0); // main returned: the CLI's JVM would end with 0 too
    }

    /** One byte to the agent (fd 5): ready, then served. */
    static void say(char what) {
        try (OutputStream agent = new FileOutputStream("/proc/self/fd/5")) {
            agent.write(what);
        } catch (IOException ignored) {
            // nobody waits for it
        }
    }

    /** NUL-terminated fields: count, command, directory, then count arguments. */
    static List<String> readRequest(InputStream in) throws IOException {
        List<String> fields = new ArrayList<>();
        ByteArrayOutputStream field = new ByteArrayOutputStream();
        int wanted = -1;
        while (wanted < 0 || fields.size() < wanted) {
            int b = in.read();
            if (b < 0) {
                return null;
            }
            if (b != 0) {
                field.write(b);
                continue;
            }
            String text = field.toString(StandardCharsets.UTF_8);
            field.reset();
            if (wanted < 0) {
                wanted = Integer.parseInt(text) + 2;
            } else {
                fields.add(text);
            }
        }
        return fields;
    }

    abstract static class Tool {
        static Tool of(String main, List<String> mainArgs) throws Exception {
            switch (main) {
                case "com.sun.tools.javac.Main":
                    return new Javac();
                case "org.jetbrains.kotlin.preloading.Preloader":
                    return new Kotlinc(mainArgs);
                case "scala.tools.nsc.Main":
                    return new Scalac();
                default:
                    throw new IllegalArgumentException("no warm compiler for " + main);
            }
        }

        abstract void warmUp(Path scratch) throws Throwable;

        abstract void run(String[] args) throws Throwable;

        boolean accepts(List<String> args) {
            return true;
        }

        static Path write(Path dir, String name, String text) throws IOException {
            return Files.writeString(dir.resolve(name), text);
        }
    }

    static final class Javac extends Tool {
        void warmUp(Path dir) throws Throwable {
            Path src = write(dir, "Main.java", "import java.util.*;\npublic class Main {\n"
                    + "  public static void main(String[] a) { List<String> l = new ArrayList<>();"
                    + " l.add(\"w\"); System.out.println(String.join(\",\", l)); }\n}\n");
            com.sun.tools.javac.Main.compile(
                    new String[] {"-encoding", "UTF-8", "-d", dir.toString(), src.toString()});
        }

        boolean accepts(List<String> args) {
            // the javac launcher takes JVM options anywhere: only ours are ours
            return args.stream().noneMatch(a -> a.startsWith("-J"));
        }

        void run(String[] args) throws Throwable {
            com.sun.tools.javac.Main.main(args);
        }
    }

    static final class Kotlinc extends Tool {
        final Class<?> compiler;
        final Method doMainNoExit;
        final Object companion;

        Kotlinc(List<String> preloaderArgs) throws Exception {
            if (preloaderArgs.size() != 3 || !preloaderArgs.get(0).equals("-cp")) {
                throw new IllegalArgumentException("unexpected Preloader arguments " + preloaderArgs);
            }
            List<URL> urls = new ArrayList<>();
            for (String part : preloaderArgs.get(1).split(":")) {
                urls.add(Path.of(part).toUri().toURL());
            }
            ClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]),
                    ClassLoader.getSystemClassLoader());
            Thread.currentThread().setContextClassLoader(loader);
            compiler = loader.loadClass(preloaderArgs.get(2));
            Class<?> cliTool = loader.loadClass("org.jetbrains.kotlin.cli.common.CLITool");
            companion = cliTool.getField("Companion").get(null);
            doMainNoExit = companion.getClass().getMethod("doMainNoExit", cliTool, String[].class);
        }

        void warmUp(Path dir) throws Throwable {
            Path src = write(dir, "main.kt",
                    "fun main(args: Array<String>) {\n    val l = listOf(\"w\")\n    println(l.joinToString())\n}\n");
            PrintStream err = System.err;
            System.setErr(new PrintStream(OutputStream.nullOutputStream()));
            try {
                doMainNoExit.invoke(companion, compiler.getConstructor().newInstance(), new String[] {
                    "-nowarn", src.toString(), "-include-runtime", "-d", dir.resolve("w.jar").toString()});
            } finally {
                System.setErr(err);
            }
        }

        void run(String[] args) throws Throwable {
            compiler.getMethod("main", String[].class).invoke(null, (Object) args);
        }
    }

    static final class Scalac extends Tool {
        void warmUp(Path dir) throws Throwable {
            Path src = write(dir, "main.scala", "object Main {\n  def main(a: Array[String]): Unit ="
                    + " println(List(\"w\").mkString(\",\"))\n}\n");
            Class.forName("scala.tools.nsc.Main").getMethod("process", String[].class).invoke(null,
                    (Object) new String[] {"-nowarn", "-d", dir.toString(), src.toString()});
        }

        void run(String[] args) throws Throwable {
            Class.forName("scala.tools.nsc.Main").getMethod("main", String[].class)
                    .invoke(null, (Object) args);
        }
    }
}
