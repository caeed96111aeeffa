module github.com/seed-a176d0ab/mitogen-go

go 1.26.0

require (
	github.com/apache/thrift v0.25.0
	github.com/cloudwego/gopkg v0.2.1
	github.com/cloudwego/thriftgo v0.4.5
	github.com/google/go-cmp v0.7.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/bytedance/gopkg v0.1.4 // indirect
	github.com/dlclark/regexp2 v1.11.0 // indirect
	golang.org/x/text v0.14.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
