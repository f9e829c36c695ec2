class Stats(private val values: List<Long>) {
    fun total(): Long = values.sum()
    fun ordered(): List<Long> = values.sorted()
}

fun primesBelow(n: Int): Int {
    val composite = BooleanArray(n)
    var count = 0
    for (i in 2 until n) {
        if (composite[i]) continue
        count++
        var j = i.toLong() * i
        while (j < n) {
            composite[j.toInt()] = true
            j += i
        }
    }
    return count
}

fun fib(n: Int): Long = if (n < 2) n.toLong() else fib(n - 1) + fib(n - 2)

fun main() {
    val tok = System.`in`.bufferedReader().readText().split(Regex("\\s+")).filter { it.isNotEmpty() }
    val n = tok[0].toInt()
    val stats = Stats(tok.subList(1, 1 + n).map { it.toLong() })
    println("sum ${stats.total()}")
    println("sorted " + stats.ordered().joinToString(" "))
    println("primes ${primesBelow(100000)}")
    println("fib ${fib(20)}")
}
