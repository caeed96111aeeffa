// Package codectest holds tests of the generated codec in gen/mitogen (gen/
// holds generated files only): every generated struct refuses a payload
// whose declared list, set or map size exceeds what the payload can hold,
// before allocating for it.
package codectest
