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
