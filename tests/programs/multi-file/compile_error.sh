echo "unclosed (
if then
