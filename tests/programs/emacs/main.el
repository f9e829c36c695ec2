(let ((total 0))
  (condition-case nil
      (while t
        (dolist (tok (split-string (read-from-minibuffer "")))
          (setq total (+ total (string-to-number tok)))))
    (error nil))
  (dolist (arg command-line-args-left)
    (setq total (+ total (string-to-number arg))))
  (setq command-line-args-left nil)
  (princ (format "%d\n" total)))
