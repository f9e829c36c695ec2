#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static int primes_below(long n) {
    char *composite = calloc(n, 1);
    int count = 0;
    for (long i = 2; i < n; i++) {
        if (composite[i]) continue;
        count++;
        for (long j = i * i; j < n; j += i) composite[j] = 1;
    }
    free(composite);
    return count;
}

static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long *v = malloc(sizeof *v * n), sum = 0;
    for (int i = 0; i < n; i++) {
        if (scanf("%ld", &v[i]) != 1) return 1;
        sum += v[i];
    }
    qsort(v, n, sizeof *v, cmp);
    printf("sum %ld\nsorted", sum);
    for (int i = 0; i < n; i++) printf(" %ld", v[i]);
    printf("\nprimes %d\nfib %ld\n", primes_below(100000), fib(20));
    free(v);
    return 0;
}
