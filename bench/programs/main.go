package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

type Stats struct{ values []int64 }

func (s Stats) Total() int64 {
	var total int64
	for _, v := range s.values {
		total += v
	}
	return total
}

func (s Stats) Ordered() []int64 {
	c := append([]int64(nil), s.values...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c
}

func primesBelow(n int) int {
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if composite[i] {
			continue
		}
		count++
		for j := i * i; j < n; j += i {
			composite[j] = true
		}
	}
	return count
}

func fib(n int) int64 {
	if n < 2 {
		return int64(n)
	}
	return fib(n-1) + fib(n-2)
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Split(bufio.ScanWords)
	in.Scan()
	n, _ := strconv.Atoi(in.Text())
	values := make([]int64, n)
	for i := range values {
		in.Scan()
		values[i], _ = strconv.ParseInt(in.Text(), 10, 64)
	}
	stats := Stats{values}
	parts := []string{}
	for _, v := range stats.Ordered() {
		parts = append(parts, strconv.FormatInt(v, 10))
	}
	fmt.Println("sum", stats.Total())
	fmt.Println("sorted", strings.Join(parts, " "))
	fmt.Println("primes", primesBelow(100000))
	fmt.Println("fib", fib(20))
}
