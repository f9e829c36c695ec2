package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

func main() {
	total := 0
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Split(bufio.ScanWords)
	for scanner.Scan() {
		n, _ := strconv.Atoi(scanner.Text())
		total += n
	}
	for _, arg := range os.Args[1:] {
		n, _ := strconv.Atoi(arg)
		total += n
	}
	fmt.Println(total)
}
