(use-modules (ice-9 rdelim))

(define (read-numbers)
  (let loop ((total 0))
    (let ((x (read)))
      (if (eof-object? x) total (loop (+ total x))))))

(define total
  (+ (read-numbers)
     (apply + (map string->number (cdr (command-line))))))
(display total)
(newline)
