import java.io.IOException;
import java.util.Arrays;

public class Main {
    static class Stats {
        private final long[] values;

        Stats(long[] values) { this.values = values; }

        long total() { return Arrays.stream(values).sum(); }

        long[] ordered() {
            long[] copy = values.clone();
            Arrays.sort(copy);
            return copy;
        }
    }

    static int primesBelow(int n) {
        boolean[] composite = new boolean[n];
        int count = 0;
        for (int i = 2; i < n; i++) {
            if (composite[i]) continue;
            count++;
            for (long j = (long) i * i; j < n; j += i) composite[(int) j] = true;
        }
        return count;
    }

    static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

    public static void main(String[] args) throws IOException {
        String[] tok = new String(System.in.readAllBytes()).trim().split("\\s+");
        int n = Integer.parseInt(tok[0]);
        long[] values = new long[n];
        for (int i = 0; i < n; i++) values[i] = Long.parseLong(tok[i + 1]);
        Stats stats = new Stats(values);
        StringBuilder out = new StringBuilder("sum " + stats.total() + "\nsorted");
        for (long x : stats.ordered()) out.append(' ').append(x);
        out.append("\nprimes ").append(primesBelow(100000)).append("\nfib ").append(fib(20));
        System.out.println(out);
    }
}
