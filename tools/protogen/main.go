// Command protogen compiles .proto files with a Go-native compiler
// (github.com/bufbuild/protocompile) and runs protoc plugins on them, so that
// regenerating ringtrain's proto/ code needs nothing but Go: no protoc.
//
//	protogen -I proto -out DIR -plugin go=PATH -plugin go-grpc=PATH \
//	    -opt go=paths=source_relative -opt go-grpc=paths=source_relative a.proto ...
//
// Each plugin gets one CodeGeneratorRequest naming the files to generate, as
// protoc would send it; the files it returns are written under -out.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// pairs is a repeatable name=value flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" || value == "" {
		return fmt.Errorf("%q: want name=value", s)
	}
	p[name] = value
	return nil
}

func main() {
	include := flag.String("I", ".", "import path of the .proto files")
	out := flag.String("out", ".", "directory the generated files are written to")
	plugins, opts := pairs{}, pairs{}
	flag.Var(plugins, "plugin", "name=PATH of a protoc plugin (repeatable): name's files come from the executable PATH")
	flag.Var(opts, "opt", "name=PARAMETER passed to plugin name (repeatable)")
	flag.Parse()
	if flag.NArg() == 0 || len(plugins) == 0 {
		fmt.Fprintln(os.Stderr, "usage: protogen -I DIR -out DIR -plugin name=PATH [-opt name=PARAM] file.proto ...")
		os.Exit(2)
	}
	if err := run(*include, *out, plugins, opts, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func run(include, out string, plugins, opts pairs, names []string) error {
	c := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{include}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(context.Background(), names...)
	if err != nil {
		return err
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: names}
	seen := map[string]bool{}
	for _, f := range files {
		addFile(req, f, seen)
	}
	kinds := make([]string, 0, len(plugins))
	for name := range plugins {
		kinds = append(kinds, name)
	}
	sort.Strings(kinds)
	for _, name := range kinds {
		r := proto.Clone(req).(*pluginpb.CodeGeneratorRequest)
		if p, ok := opts[name]; ok {
			r.Parameter = proto.String(p)
		}
		if err := generate(plugins[name], r, out); err != nil {
			return fmt.Errorf("plugin %s: %w", name, err)
		}
	}
	return nil
}

// addFile appends f after its imports, each file once: the topological order
// a CodeGeneratorRequest requires.
func addFile(req *pluginpb.CodeGeneratorRequest, f protoreflect.FileDescriptor, seen map[string]bool) {
	if seen[f.Path()] {
		return
	}
	seen[f.Path()] = true
	imports := f.Imports()
	for i := range imports.Len() {
		addFile(req, imports.Get(i).FileDescriptor, seen)
	}
	var fdp *descriptorpb.FileDescriptorProto
	if lf, ok := f.(linker.File); ok {
		if r, ok := lf.(linker.Result); ok {
			fdp = r.FileDescriptorProto()
		}
	}
	if fdp == nil {
		fdp = protodesc.ToFileDescriptorProto(f)
	}
	req.ProtoFile = append(req.ProtoFile, fdp)
}

// generate runs one plugin and writes what it returns under out.
func generate(path string, req *pluginpb.CodeGeneratorRequest, out string) error {
	in, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	cmd := exec.Command(path)
	cmd.Stdin = bytes.NewReader(in)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return fmt.Errorf("decoding its response: %w", err)
	}
	if resp.Error != nil {
		return errors.New(resp.GetError())
	}
	for _, f := range resp.File {
		if f.GetInsertionPoint() != "" {
			return fmt.Errorf("%s: insertion points are not supported", f.GetName())
		}
		p := filepath.Join(out, filepath.FromSlash(f.GetName()))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.GetContent()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
