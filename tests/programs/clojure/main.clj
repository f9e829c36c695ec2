(require '[clojure.string :as str])

(let [input (slurp *in*)
      nums (map #(Long/parseLong %) (remove str/blank? (str/split input #"\s+")))
      args (map #(Long/parseLong %) *command-line-args*)]
  (println (+ (reduce + nums) (reduce + args))))
