module repq

go 1.19
