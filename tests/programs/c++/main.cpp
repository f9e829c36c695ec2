#include <iostream>
#include <string>

int main(int argc, char **argv) {
    long total = 0, n;
    while (std::cin >> n) total += n;
    for (int i = 1; i < argc; i++) total += std::stol(argv[i]);
    std::cout << total << std::endl;
    return 0;
}
