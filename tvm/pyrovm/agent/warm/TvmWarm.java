// A JVM compiler pre-started in a warm sandbox (see tvm_agent/warm.py).
//
// Started by warm_serve.py as `java OPTS TvmWarm.java MAIN N MAIN_ARGS... -- PREFIX...`
// where PREFIX is the argv the compiler's own launcher would have run java
// (or javac) with. It loads the compiler and compiles a throw-away program
// in a scratch directory (classes loaded, hot code compiled), tells the
// agent it is ready (fd 5), then waits for the one request of its sandbox
// (fd 3, written by shim.sh): if the request's argv starts with PREFIX and
// its directory is ours, the compiler's own main() runs on the rest, exactly
// as the CLI runs it, exit code and all (scalac: on the warm-up's compiler,
// see Scalac); else it answers "cold" (fd 4) and the shim runs the real command.
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
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
import java.util.Locale;
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

    /** One byte to the agent (fd 5): ready, then served (scalac: then reused). */
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

    /**
     * scalac, with the warm-up's compiler ({@code Global}) reused for the request
     * as scalac's own resident compiler and REPL reuse theirs: a new {@code Run}
     * on it, with the request's output directory and a fresh reporter. The
     * warm-up compiles into a package of its own ({@link #WARM_PACKAGE}), which
     * is then unlinked from the root package: the request sees the class path
     * and nothing of the warm-up's. Only for the catalog's exact arguments
     * ({@code -nowarn -d DIR FILE.scala...}) and a work dir that, as a class path
     * entry, lists nothing (no class file, no directory) at warm-up and at
     * request alike, since the reused compiler listed it once; anything else
     * runs {@code Main} with a compiler of its own, as the CLI does.
     */
    static final class Scalac extends Tool {
        static final String WARM_PACKAGE = "tvm_warmup";
        /** What most programs use: reading input, collections, strings, a case class. */
        static final String WARM_UP = String.join("\n",
                "case class P(name: String, n: Int)",
                "object Main {",
                "  def fib(n: Int): Long = if (n < 2) n else fib(n - 1) + fib(n - 2)",
                "  def main(args: Array[String]): Unit = {",
                "    val tok = scala.io.Source.stdin.mkString.split(\"\\\\s+\").filter(_.nonEmpty)",
                "    val line = scala.io.StdIn.readLine()",
                "    val xs = tok.slice(1, 3).map(_.toLong).toSeq.sorted",
                "    var count = 0",
                "    for (i <- 2 until 10 if i % 2 == 0) count += i",
                "    val ps = List(P(\"a\", 1), P(line, 2)).map { case P(s, k) => s * k }",
                "    val m = ps.groupBy(_.length).mapValues(_.size).toMap",
                "    println(s\"sum ${xs.sum} ${fib(count)} $m\" + xs.mkString(\" \") + ps.foldLeft(0)(_ + _.length))",
                "  }",
                "}",
                "");
        Object global; // the warm-up's compiler, or null: every request compiles fresh
        boolean workDirEmpty;

        void warmUp(Path dir) throws Throwable {
            workDirEmpty = listsNothing(Path.of(System.getProperty("user.dir")));
            Path src = write(dir, "main.scala", "package " + WARM_PACKAGE + "\n" + WARM_UP);
            Object settings = cls("scala.tools.nsc.Settings").getConstructor().newInstance();
            Object reporter = newReporter(settings);
            Object command = cls("scala.tools.nsc.CompilerCommand")
                    .getConstructor(cls("scala.collection.immutable.List"), settings.getClass())
                    .newInstance(list("-nowarn", "-d", dir.toString(), src.toString()), settings);
            Object g = cls("scala.tools.nsc.Global")
                    .getConstructor(settings.getClass(), cls("scala.tools.nsc.reporters.Reporter"))
                    .newInstance(settings, reporter);
            compile(g, call(command, "files"));
            if ((boolean) call(reporter, "hasErrors")) {
                return; // not the compiler we expect: serve fresh
            }
            // The root package's scope as the namer and typer see it (its first
            // info) and as the later phases do (flatten gives it a copy).
            Object root = call(call(g, "rootMirror"), "RootClass");
            Object name = g.getClass().getMethod("newTermName", String.class).invoke(g, WARM_PACKAGE);
            for (String info : new String[] {"originalInfo", "info"}) {
                Object decls = call(call(root, info), "decls");
                Object pkg = method(decls, "lookup", 1).invoke(decls, name);
                method(decls, "unlink", cls("scala.reflect.internal.Symbols$Symbol")).invoke(decls, pkg);
                if ((boolean) call(method(decls, "lookup", 1).invoke(decls, name), "exists")) {
                    return;
                }
            }
            global = g;
        }

        void run(String[] args) throws Throwable {
            List<String> files = reusable(args);
            if (files == null) {
                cls("scala.tools.nsc.Main").getMethod("main", String[].class).invoke(null, (Object) args);
                return;
            }
            say('r'); // for the tests: reused
            // Driver.process and main, with the warm-up's compiler as newCompiler()
            Object g = global;
            Object settings = call(g, "settings");
            method(settings, "processArguments", 2)
                    .invoke(settings, list("-d", args[2]), true);
            Object reporter = newReporter(settings);
            method(g, "reporter_$eq", cls("scala.tools.nsc.reporters.Reporter")).invoke(g, reporter);
            try {
                compile(g, list(files.toArray(new String[0])));
                call(reporter, "printSummary");
            } catch (InvocationTargetException e) {
                Throwable ex = e.getCause();
                method(g, "reportThrowable", Throwable.class).invoke(g, ex);
                if (!cls("scala.reflect.internal.FatalError").isInstance(ex)) {
                    throw ex;
                }
            }
            System.exit((boolean) call(reporter, "hasErrors") ? 1 : 0);
        }

        /** The request's source files, if the reused compiler may take it. */
        List<String> reusable(String[] args) {
            if (global == null || !workDirEmpty || args.length < 4 || !args[0].equals("-nowarn")
                    || !args[1].equals("-d") || !Files.isDirectory(Path.of(args[2]))
                    || !listsNothing(Path.of(System.getProperty("user.dir")))) {
                return null;
            }
            List<String> files = Arrays.asList(args).subList(3, args.length);
            for (String f : files) {
                if (f.startsWith("-") || f.startsWith("@") || !f.endsWith(".scala")
                        || !Files.isRegularFile(Path.of(f))) {
                    return null;
                }
            }
            return files;
        }

        /** Whether a directory, as a class path entry, holds no class and no package. */
        static boolean listsNothing(Path dir) {
            File[] entries = dir.toFile().listFiles();
            if (entries == null) {
                return false;
            }
            for (File f : entries) {
                String name = f.getName().toLowerCase(Locale.ROOT);
                if (f.isDirectory() || name.endsWith(".class") || name.endsWith(".sig")) {
                    return false;
                }
            }
            return true;
        }

        static void compile(Object g, Object files) throws Exception {
            Object run = cls("scala.tools.nsc.Global$Run").getConstructor(g.getClass()).newInstance(g);
            method(run, "compile", 1).invoke(run, files);
        }

        static Object newReporter(Object settings) throws Exception {
            return cls("scala.tools.nsc.reporters.ConsoleReporter")
                    .getConstructor(settings.getClass()).newInstance(settings);
        }

        static Object list(String... items) throws Exception {
            Object seq = cls("scala.Predef").getMethod("wrapRefArray", Object[].class)
                    .invoke(null, (Object) items);
            return call(seq, "toList");
        }

        static Class<?> cls(String name) throws ClassNotFoundException {
            return Class.forName(name);
        }

        static Object call(Object target, String name) throws Exception {
            return target.getClass().getMethod(name).invoke(target);
        }

        static Method method(Object target, String name, Class<?>... types) throws Exception {
            return target.getClass().getMethod(name, types);
        }

        static Method method(Object target, String name, int arity) {
            for (Method m : target.getClass().getMethods()) {
                if (m.getName().equals(name) && m.getParameterCount() == arity) {
                    return m;
                }
            }
            throw new IllegalStateException("no " + name + "/" + arity + " on " + target.getClass());
        }
    }
}
