#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    long total = 0, n;
    while (scanf("%ld", &n) == 1) total += n;
    for (int i = 1; i < argc; i++) total += strtol(argv[i], NULL, 10);
    printf("%ld\n", total);
    return 0;
}
