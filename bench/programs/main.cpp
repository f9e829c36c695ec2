#include <bits/stdc++.h>
using namespace std;

struct Stats {
    vector<long long> values;
    long long total() const { return accumulate(values.begin(), values.end(), 0LL); }
    vector<long long> ordered() const {
        auto copy = values;
        sort(copy.begin(), copy.end());
        return copy;
    }
};

int primes_below(long long n) {
    vector<bool> composite(n);
    int count = 0;
    for (long long i = 2; i < n; i++) {
        if (composite[i]) continue;
        count++;
        for (long long j = i * i; j < n; j += i) composite[j] = true;
    }
    return count;
}

long long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

int main() {
    ios::sync_with_stdio(false);
    int n;
    cin >> n;
    Stats stats;
    stats.values.resize(n);
    for (auto &x : stats.values) cin >> x;
    cout << "sum " << stats.total() << "\nsorted";
    for (auto x : stats.ordered()) cout << ' ' << x;
    cout << "\nprimes " << primes_below(100000) << "\nfib " << fib(20) << "\n";
}
