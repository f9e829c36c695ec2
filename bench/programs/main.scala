object Main {
  class Stats(values: Seq[Long]) {
    def total: Long = values.sum
    def ordered: Seq[Long] = values.sorted
  }

  def primesBelow(n: Int): Int = {
    val composite = new Array[Boolean](n)
    var count = 0
    for (i <- 2 until n if !composite(i)) {
      count += 1
      var j = i.toLong * i
      while (j < n) {
        composite(j.toInt) = true
        j += i
      }
    }
    count
  }

  def fib(n: Int): Long = if (n < 2) n else fib(n - 1) + fib(n - 2)

  def main(args: Array[String]): Unit = {
    val tok = scala.io.Source.stdin.mkString.split("\\s+").filter(_.nonEmpty)
    val n = tok(0).toInt
    val stats = new Stats(tok.slice(1, 1 + n).map(_.toLong).toSeq)
    println(s"sum ${stats.total}")
    println("sorted " + stats.ordered.mkString(" "))
    println(s"primes ${primesBelow(100000)}")
    println(s"fib ${fib(20)}")
  }
}
