#import <Foundation/Foundation.h>
#include <stdio.h>

int main(int argc, const char *argv[]) {
    NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
    long total = 0, n;
    while (scanf("%ld", &n) == 1) total += n;
    NSArray *args = [[NSProcessInfo processInfo] arguments];
    for (NSUInteger i = 1; i < [args count]; i++)
        total += [[args objectAtIndex:i] longLongValue];
    printf("%ld\n", total);
    [pool drain];
    return 0;
}
