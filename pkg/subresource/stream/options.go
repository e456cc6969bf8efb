/*
Copyright The Wukong Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package stream

import (
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Options is the options object a Connecter was given, as the kind T its
// NewConnectOptions made, checked by validate: a 400 naming the fields when
// it is invalid, an internal error when it is not a T at all.
func Options[T runtime.Object](obj runtime.Object, validate func(T) field.ErrorList) (T, error) {
	o, ok := obj.(T)
	if !ok {
		return o, apierrors.NewInternalError(fmt.Errorf("invalid options object: %T", obj))
	}
	if errs := validate(o); len(errs) > 0 {
		return o, apierrors.NewBadRequest(errs.ToAggregate().Error())
	}
	return o, nil
}
