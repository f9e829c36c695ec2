(defun read-all-numbers ()
  (loop for n = (read *standard-input* nil nil)
        while n
        sum n))

(let ((total (read-all-numbers)))
  (dolist (arg (cdr sb-ext:*posix-argv*))
    (incf total (parse-integer arg)))
  (format t "~D~%" total))
