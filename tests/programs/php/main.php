<?php
$total = 0;
foreach (preg_split('/\s+/', stream_get_contents(STDIN), -1, PREG_SPLIT_NO_EMPTY) as $tok) {
    $total += intval($tok);
}
foreach (array_slice($argv, 1) as $arg) {
    $total += intval($arg);
}
echo $total, "\n";
