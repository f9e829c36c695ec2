#lang racket/base
(require racket/port racket/string)

(define from-stdin
  (for/sum ([tok (string-split (port->string (current-input-port)))])
    (string->number tok)))
(define from-args
  (for/sum ([a (current-command-line-arguments)])
    (string->number a)))
(displayln (+ from-stdin from-args))
