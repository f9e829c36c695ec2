fun main(args: Array<String>) {
    var total = 0L
    val input = generateSequence(::readLine).joinToString(" ")
    for (tok in input.split(Regex("\\s+"))) if (tok.isNotEmpty()) total += tok.toLong()
    for (arg in args) total += arg.toLong()
    println(total)
}
