package core_test

import "github.com/cloudwego/gopkg/protocol/thrift"

func fastMarshal(v thrift.FastCodec) []byte { return thrift.FastMarshal(v) }
