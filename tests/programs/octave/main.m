tokens = strsplit(strtrim(fread(stdin, Inf, 'char=>char')'));
total = 0;
for i = 1:numel(tokens)
  if !isempty(tokens{i})
    total += str2double(tokens{i});
  end
end
args = argv();
for i = 1:numel(args)
  total += str2double(args{i});
end
printf("%d\n", total);
