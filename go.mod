module github.com/evident-dev/evident

go 1.26.8
